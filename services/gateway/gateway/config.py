"""The gateway's settings (`LIKENESS_*` environment variables), read once through `get_settings()`.

Token settings (`LIKENESS_JWKS_URL`, `LIKENESS_JWT_ISSUER`...) are shared with every service, which
verifies the same tokens again: `likeness.config.CommonSettings` holds them and refuses, in production, a
development signing secret or a missing JWKS.
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from likeness.config import CommonSettings

MIB = 1024 * 1024


class GatewaySettings(CommonSettings):
    # No S3 or Vault rights: bytes come from the services that own them.
    uses_storage: ClassVar[bool] = False
    key_secrets: ClassVar[tuple[str, ...]] = ("idempotency_secret",)

    service_name: str = "gateway"
    http_port: int = 8080

    #: Backends as host:port. Every hop is mutual TLS with the gateway's certificate (`LIKENESS_TLS_DIR`), and
    #: each backend must present the certificate of its identity (`gateway.backends.BACKEND_IDENTITIES`).
    retention_addr: str = "127.0.0.1:50051"
    ingest_addr: str = "127.0.0.1:50052"
    trainer_addr: str = "127.0.0.1:50053"
    renderer_addr: str = "127.0.0.1:50054"
    grpc_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Uploads and image downloads stream at the client's pace, so they get a longer deadline than a lookup.
    #: A photo upload must be received whole within it, counted from its arrival: then the gateway stops
    #: reading, cancels its ingest calls (their gRPC deadline is the same instant), answers 408
    #: `upload_timeout` and closes the connection.
    stream_timeout_seconds: float = Field(default=120.0, gt=0)
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)

    max_upload_bytes: int = Field(default=25 * MIB, gt=0)
    #: Accepted photos a subject needs before a training may start.
    min_photos_for_training: int = Field(default=4, ge=1)
    max_files_per_request: int = Field(default=20, gt=0)

    #: Token buckets per caller (an end user's `sub`, else the token's client, within its tenant), each
    #: under a tenant-wide total (`gateway.ratelimit`); uploads draw from separate, stricter buckets. They
    #: hold across replicas while `rate_limit_sync` is on (each replica's buckets are its own, charged
    #: with what the others report); off, or while NATS is down, the ceilings are these times the replicas.
    rate_limit_per_second: float = Field(default=50.0, gt=0)
    rate_limit_burst: int = Field(default=100, ge=1)
    tenant_rate_limit_per_second: float = Field(default=200.0, gt=0)
    tenant_rate_limit_burst: int = Field(default=400, ge=1)
    upload_rate_limit_per_second: float = Field(default=2.0, gt=0)
    upload_rate_limit_burst: int = Field(default=10, ge=1)
    tenant_upload_rate_limit_per_second: float = Field(default=10.0, gt=0)
    tenant_upload_rate_limit_burst: int = Field(default=40, ge=1)
    #: Tenants tracked per replica (least recently seen are forgotten, i.e. start with a full bucket).
    rate_limit_tenants: int = Field(default=10_000, ge=1)
    #: Callers tracked per replica, all tenants together (the same forgetting; the tenant-wide bucket
    #: still holds for a tenant whose callers are forgotten).
    rate_limit_callers: int = Field(default=100_000, ge=1)
    #: Replicas report what their buckets spent over NATS (`gateway.ratelimit_sync`) this often; together
    #: they admit at most what the others admitted in one interval (and its transit) beyond a limit.
    rate_limit_sync: bool = True
    rate_limit_sync_seconds: float = Field(default=0.1, ge=0.01, le=5.0)
    #: Deadline of a non-streaming request (uploads, downloads and event streams have their own).
    request_timeout_seconds: float = Field(default=30.0, gt=0)

    # Limits before work (`gateway.edge`): each is checked before the request's body is read.
    #: Largest body of any route but the photo upload (every one of them takes JSON or nothing). A declared
    #: Content-Length above it is refused with 413 unread; a chunked body is cut at it.
    max_json_body_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Requests in flight per replica (all routes but /healthz and /readyz, streams included); past it:
    #: 503 `overloaded` with Retry-After. Bounds memory: a 512Mi pod holds this many at once.
    max_concurrent_requests: int = Field(default=512, ge=1)
    #: Server-Sent Event streams open at once per caller, per replica (429 `too_many_streams` past it).
    max_event_streams_per_caller: int = Field(default=8, ge=1)
    #: Exports streaming at once per caller, per replica (429 `too_many_exports` past it).
    max_exports_per_caller: int = Field(default=2, ge=1)
    #: A connection must deliver a request's complete headers within this many seconds of opening (or of
    #: the previous response), else it is answered 408 and closed (`gateway.http_protocol`: slowloris).
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    #: An idle keep-alive connection is closed after this many seconds without a new request.
    keep_alive_timeout_seconds: int = Field(default=5, ge=1, le=300)

    #: Idempotency records: a NATS KV bucket owned by the gateway, entries expire after this long.
    idempotency_bucket: str = "gateway_idempotency"
    #: Keys the idempotency records' ids and seals their bodies; the gateway's own (it holds no other key).
    idempotency_secret: SecretStr = SecretStr("likeness-dev")
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    #: The durable consumer that purges an erased subject's idempotency records: shared by the replicas
    #: that share the bucket (each erasure handled once), and by no one else: a process holding a member
    #: of it that does not ack delays every purge it is handed by the ack wait.
    erasures_durable: str = Field(default="gateway-erasures", pattern=r"^[A-Za-z0-9_-]{1,64}$")

    #: Reads of trainings and renders trust a subject seen active this recently (erasures clear it at once).
    subject_status_cache_seconds: float = Field(default=1.0, ge=0, le=10)
    #: Reads of a training or render are answered from what this replica read at most this long ago
    #: (0 turns it off); any event of the subject drops them at once (`gateway.job_cache`).
    job_cache_seconds: float = Field(default=1.0, ge=0, le=10)

    #: Log every successful quick read (GET) at INFO too. Off: those access lines are DEBUG, the rest
    #: (writes, 4xx/5xx, reads of a second or more, streams) stay INFO; the metrics count every request.
    access_log_reads: bool = False

    #: Server-Sent Events: a comment line this often keeps proxies from closing an idle stream; the state
    #: is also re-read this often in case an event was missed (renders announce only their end).
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)
    sse_poll_seconds: float = Field(default=2.0, gt=0)
    sse_max_seconds: float = Field(default=3600.0, gt=0)

    @field_validator("retention_addr", "ingest_addr", "trainer_addr", "renderer_addr")
    @classmethod
    def _refuse_plaintext_backends_in_production(cls, address: str, info: ValidationInfo) -> str:
        """A backend address is a gRPC target (`host:port`, `dns:///host:port`); one written as a URL
        (`http://...`, `h2c://...`) means plaintext, which production never speaks."""
        if info.data.get("env") == "production" and not _is_grpc_target(address):
            raise ValueError(
                f"refusing production settings: LIKENESS_{str(info.field_name).upper()} must be host:port "
                "(gRPC to backends is mutual TLS only)"
            )
        return address


def _is_grpc_target(address: str) -> bool:
    scheme, separator, _ = address.partition("://")
    if separator:  # a URL: only gRPC's own name resolver scheme
        return scheme == "dns"
    return bool(address)


@lru_cache(maxsize=1)
def get_settings() -> GatewaySettings:
    return GatewaySettings()
