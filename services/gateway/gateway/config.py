"""The gateway's settings (`LIKENESS_*` environment variables), read once through `get_settings()`.

In production the gateway verifies tokens only against the tenant identity provider's public keys
(JWKS): it refuses to start without them, and refuses a development signing secret.
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator

from likeness.config import CommonSettings

DEV_ISSUER = "likeness-dev"
MIB = 1024 * 1024


class GatewaySettings(CommonSettings):
    # No S3 or Vault rights: bytes come from the services that own them.
    uses_storage: ClassVar[bool] = False

    service_name: str = "gateway"
    http_port: int = 8080

    #: Backends as host:port (plaintext on loopback in dev; mutual TLS comes from the mesh in a cluster).
    retention_addr: str = "127.0.0.1:50051"
    ingest_addr: str = "127.0.0.1:50052"
    trainer_addr: str = "127.0.0.1:50053"
    renderer_addr: str = "127.0.0.1:50054"
    grpc_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Uploads and image downloads stream at the client's pace, so they get a longer deadline than a lookup.
    stream_timeout_seconds: float = Field(default=120.0, gt=0)
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)

    #: HS256 secret for tokens minted by `likeness token` (development only).
    jwt_dev_secret: SecretStr = SecretStr("")
    #: The identity provider's public keys: a URL (fetched and cached) or a JWKS file (e.g. a mounted secret).
    jwks_url: str = ""
    jwks_file: str = ""
    jwt_issuer: str = DEV_ISSUER
    jwt_audience: str = "likeness"
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)

    max_upload_bytes: int = Field(default=25 * MIB, gt=0)
    #: Accepted photos a subject needs before a training may start.
    min_photos_for_training: int = Field(default=4, ge=1)
    max_files_per_request: int = Field(default=20, gt=0)

    #: Per-tenant token buckets (in-process: each replica keeps its own, so a tenant's effective ceiling
    #: is the rate times the replica count). Uploads draw from a separate, stricter bucket.
    rate_limit_per_second: float = Field(default=50.0, gt=0)
    rate_limit_burst: int = Field(default=100, ge=1)
    upload_rate_limit_per_second: float = Field(default=2.0, gt=0)
    upload_rate_limit_burst: int = Field(default=10, ge=1)
    #: Tenants tracked per replica (least recently seen are forgotten, i.e. start with a full bucket).
    rate_limit_tenants: int = Field(default=10_000, ge=1)
    #: Deadline of a non-streaming request (uploads, downloads and event streams have their own).
    request_timeout_seconds: float = Field(default=30.0, gt=0)

    #: Idempotency records: a NATS KV bucket owned by the gateway, entries expire after this long.
    idempotency_bucket: str = "gateway_idempotency"
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

    @model_validator(mode="after")
    def _refuse_development_auth_in_production(self) -> GatewaySettings:
        if not self.is_production:
            return self
        problems: list[str] = []
        if not (self.jwks_url or self.jwks_file):
            problems.append("set LIKENESS_JWKS_URL or LIKENESS_JWKS_FILE")
        if self.jwks_url and not self.jwks_url.startswith("https://"):
            problems.append("LIKENESS_JWKS_URL must use https://")
        if self.jwt_dev_secret.get_secret_value():
            problems.append("LIKENESS_JWT_DEV_SECRET is for development only")
        if self.jwt_issuer in ("", DEV_ISSUER):
            problems.append("set LIKENESS_JWT_ISSUER to the identity provider's issuer")
        if problems:
            raise ValueError("refusing production settings: " + "; ".join(problems))
        return self


@lru_cache(maxsize=1)
def get_settings() -> GatewaySettings:
    return GatewaySettings()
