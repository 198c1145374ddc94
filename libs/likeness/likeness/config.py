"""Settings shared by every service, read from `LIKENESS_*` environment variables and secret files.

Each service subclasses `CommonSettings` with its own fields, in one place, and reads it once through a
cached `get_settings()`. Secrets (every `SecretStr` setting) come from files: `LIKENESS_SECRETS_DIR` names
a directory with one file per secret, named after the setting (`s3_secret_key`, `vault_token`...), as a
Kubernetes Secret mounted as a volume lays them out. A process holds only the secrets its settings
declare. In production the settings refuse development secrets, plaintext endpoints (OTLP included), the
development token issuer and audience, and a secret given as an environment variable (those leak into
`/proc/<pid>/environ`, crash reports and child processes).

`LIKENESS_ENV` defaults to production: an image started anywhere without it refuses development values
instead of silently running on them. The dev stack, the tests, the benchmarks and the demo say
`LIKENESS_ENV=development` explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from likeness.quota_policy import QuotaSettings

#: Values that only the dev stack may use; production refuses to start with any of them.
DEVELOPMENT_SECRETS = frozenset(
    {"", "dev", "development", "changeme", "secret", "likeness-dev", "minioadmin"}
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Scheme of each endpoint that counts as encrypted in transit.
SECURE_SCHEMES = {"nats_url": {"tls"}, "s3_endpoint": {"https"}, "vault_addr": {"https"}}
ENV_PREFIX = "LIKENESS_"
#: The issuer of development tokens (`likeness dev token`); production must name its identity provider's.
DEV_JWT_ISSUER = "likeness-dev"
#: The audience of development tokens (the default); production must name its own API's.
DEV_JWT_AUDIENCE = "likeness"
#: Schemes of `LIKENESS_OTLP_ENDPOINT`: OTLP/gRPC over TLS, or plaintext (development only).
OTLP_SCHEMES = frozenset({"https", "http"})
#: The directory of secret files (one per secret setting, named after it).
SECRETS_DIR_VARIABLE = "LIKENESS_SECRETS_DIR"


def secret_field_names(settings_cls: type[BaseSettings]) -> list[str]:
    """The settings of `settings_cls` that hold secrets (annotated `SecretStr`)."""
    return [name for name, field in settings_cls.model_fields.items() if field.annotation is SecretStr]


def secrets_in_environment(settings_cls: type[BaseSettings]) -> list[str]:
    """Environment variables that set one of the class's secrets (refused in production)."""
    names = {f"{ENV_PREFIX}{name}".upper() for name in secret_field_names(settings_cls)}
    return sorted(key for key in os.environ if key.upper() in names)


@dataclass(frozen=True)
class NatsCredentials:
    """A process's NATS user (`LIKENESS_NATS_USER`) and password (the `nats_password` secret file)."""

    user: str = ""
    password: str = ""


class CommonSettings(BaseSettings):
    # hide_input_in_errors: a refusal prints what was refused, never the values given (secrets among them).
    model_config = SettingsConfigDict(
        env_prefix="LIKENESS_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    #: Production unless said otherwise (`development` for the dev stack, tests and benchmarks only).
    env: Literal["development", "production"] = "production"
    log_level: str = "INFO"
    service_name: str = "likeness"

    nats_url: str = "nats://127.0.0.1:4222"
    # NATS per-service users (issue 14, part P: `likeness.provisioning`, `likeness.access_policies`).
    #: This process's NATS user, one per identity (`gateway`, `retention`, ..., `bootstrap`), whose
    #: nats-server permissions allow exactly what that identity does. Empty: as the URL says (tests).
    nats_user: str = ""
    #: That user's password (the `nats_password` secret file).
    nats_password: SecretStr = SecretStr("")

    s3_endpoint: str = "http://127.0.0.1:8333"
    s3_access_key: SecretStr = SecretStr("likeness-dev")
    s3_secret_key: SecretStr = SecretStr("likeness-dev")
    s3_bucket: str = "likeness-data"
    s3_region: str = "us-east-1"

    vault_addr: str = "http://127.0.0.1:8200"
    vault_auth: Literal["token", "kubernetes"] = "token"
    vault_token: SecretStr = SecretStr("dev")
    vault_role: str = ""
    vault_transit_mount: str = "transit"
    vault_kubernetes_token_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105
    vault_timeout_seconds: float = 10.0

    grpc_port: int = 50051
    metrics_port: int = 9464
    #: OTLP/gRPC collector of traces: `https://host:4317` (TLS; production accepts nothing else) or
    #: `http://host:4317` (plaintext, development). Empty: no export.
    otlp_endpoint: str = ""

    # Mutual TLS on every gRPC hop (issue 14, part S1: `likeness.grpc_tls`, `likeness.grpc_callers`).
    #: This process's certificate, key and trusted CAs: a directory with `tls.crt`, `tls.key` and `ca.crt`
    #: (cert-manager's Secret layout). gRPC servers and channels refuse to start without it, in every
    #: environment; renewed files are picked up without a restart.
    tls_dir: str = ""
    #: Plaintext gRPC health, and nothing else, for Kubernetes' gRPC probes (they send no client
    #: certificate); every other call goes to `grpc_port`, mutual TLS only.
    health_port: int = 50050

    # End users' tokens, verified by the gateway and again by every service (issue 14, part S2:
    # `likeness.user_tokens`, `likeness.grpc_user_tokens`).
    #: HS256 secret of the tokens `likeness dev token` mints (development only: refused in production).
    jwt_dev_secret: SecretStr = SecretStr("")
    #: The identity provider's public keys: a URL (fetched and cached) or a JWKS file (a mounted secret).
    jwks_url: str = ""
    jwks_file: str = ""
    jwt_issuer: str = DEV_JWT_ISSUER
    jwt_audience: str = DEV_JWT_AUDIENCE
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)

    #: Whether this service talks to S3 and Vault (the gateway does not: it holds no storage rights).
    uses_storage: ClassVar[bool] = True
    #: Secrets of the service that are keys (HMAC, sealing): production wants at least 32 characters and
    #: no development value.
    key_secrets: ClassVar[tuple[str, ...]] = ()
    #: Whether this process verifies end users' tokens (every service and the gateway; a tool that serves
    #: no calls, such as a provisioning job, may say no): production then requires the JWKS (part S2).
    verifies_user_tokens: ClassVar[bool] = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then the secret files of `LIKENESS_SECRETS_DIR`."""
        directory = os.environ.get(SECRETS_DIR_VARIABLE, "").strip()
        if not directory:
            return (init_settings, env_settings)
        files = SecretsSettingsSource(
            settings_cls, secrets_dir=directory, env_prefix="", case_sensitive=False
        )
        return (init_settings, env_settings, files)

    def secrets_to_check(self) -> dict[str, SecretStr]:
        """The secrets production must not find at a development value."""
        secrets: dict[str, SecretStr] = {name: getattr(self, name) for name in self.key_secrets}
        if self.uses_storage:
            secrets["s3_secret_key"] = self.s3_secret_key
        if self.uses_storage and self.vault_auth == "token":
            secrets["vault_token"] = self.vault_token
        if self.nats_user:  # part P: a NATS user's password is a secret like any other
            secrets["nats_password"] = self.nats_password
        return secrets

    @field_validator("otlp_endpoint")
    @classmethod
    def _otlp_endpoint_is_a_url(cls, endpoint: str) -> str:
        """`https://` or `http://` with a host: without a scheme the exporter would choose TLS or not from
        other environment variables (`OTEL_EXPORTER_OTLP_INSECURE`), out of this class's sight."""
        url = urlparse(endpoint.strip())
        if endpoint and (url.scheme not in OTLP_SCHEMES or not url.hostname):
            raise ValueError("LIKENESS_OTLP_ENDPOINT must be https://host:port (or http:// in development)")
        return endpoint.strip()

    @model_validator(mode="after")
    def _refuse_development_values_in_production(self) -> CommonSettings:
        if self.env != "production":
            return self
        problems: list[str] = [
            f"{name} is set in the environment: mount it as a file in {SECRETS_DIR_VARIABLE}"
            for name in secrets_in_environment(type(self))
        ]
        for name, value in self.secrets_to_check().items():
            if value.get_secret_value().strip().lower() in DEVELOPMENT_SECRETS:
                problems.append(f"LIKENESS_{name.upper()} is a development value")
        problems += [
            f"LIKENESS_{name.upper()} must be at least 32 characters"
            for name in self.key_secrets
            if len(getattr(self, name).get_secret_value()) < 32
        ]
        for name, schemes in SECURE_SCHEMES.items():
            if name != "nats_url" and not self.uses_storage:
                continue
            # LIKENESS_NATS_URL may list a cluster's servers, comma-separated: each one must be secure.
            urls = [urlparse(part.strip()) for part in str(getattr(self, name)).split(",")]
            if any(url.scheme not in schemes for url in urls):
                problems.append(
                    f"LIKENESS_{name.upper()} must use {'/'.join(sorted(schemes))}:// in production"
                )
        if self.otlp_endpoint and urlparse(self.otlp_endpoint).scheme != "https":
            # Spans name routes, services and timings of every request: not for anyone on the wire.
            problems.append("LIKENESS_OTLP_ENDPOINT must use https:// in production (plaintext OTLP)")
        if problems:
            raise ValueError("refusing production settings: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _refuse_development_tokens_in_production(self) -> CommonSettings:
        """Production verifies tokens only against the identity provider's public keys (part S2)."""
        if self.env != "production" or not self.verifies_user_tokens:
            return self
        problems: list[str] = []
        if not (self.jwks_url or self.jwks_file):
            problems.append("set LIKENESS_JWKS_URL or LIKENESS_JWKS_FILE")
        if self.jwks_url and not self.jwks_url.startswith("https://"):
            problems.append("LIKENESS_JWKS_URL must use https://")
        if self.jwt_dev_secret.get_secret_value():
            problems.append("LIKENESS_JWT_DEV_SECRET is for development only")
        if self.jwt_issuer in ("", DEV_JWT_ISSUER):
            problems.append("set LIKENESS_JWT_ISSUER to the identity provider's issuer")
        if self.jwt_audience.strip() in ("", DEV_JWT_AUDIENCE):
            # The default is every deployment's default: a token minted for another deployment (or any
            # API that kept the default) would be accepted here too.
            problems.append(
                "set LIKENESS_JWT_AUDIENCE to this deployment's own audience "
                f"(not the default {DEV_JWT_AUDIENCE!r})"
            )
        if problems:
            raise ValueError("refusing production settings: " + "; ".join(problems))
        return self

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def nats_credentials(self) -> NatsCredentials:
        """This process's NATS user and password (part P)."""
        return NatsCredentials(self.nats_user, self.nats_password.get_secret_value())


class AuditedSettings(CommonSettings):
    """Settings of a service that writes audit records about people (ingest, trainer, renderer, retention;
    never the gateway): the secret of their pseudonym in the trail (`likeness.audit`)."""

    key_secrets: ClassVar[tuple[str, ...]] = ("audit_pseudonym_secret",)

    #: Key of the keyed HMAC that names a person in the audit trail (`subject_hmac`, the pseudonym): the
    #: same in every auditing service, so one person's records share one pseudonym and their processing
    #: log is one filtered read. Held apart from retention's `hmac_secret` (tombstones, external refs,
    #: erasure records): the services that audit accesses never get that one.
    audit_pseudonym_secret: SecretStr = SecretStr("likeness-dev")


class JobQueueSettings(AuditedSettings, QuotaSettings):
    """Settings of a job service (trainer, renderer) shared by its roles: the timing of its per-tenant work
    queues (the serve role creates their consumers with it, the workers heartbeat by it:
    `likeness.tenant_queues`) and how its serve role reconciles job records with the work queue
    (`likeness.orphan_sweeper`), and the tenants' quotas its serve role enforces (`QuotaSettings`:
    `LIKENESS_QUOTA_*` defaults, `LIKENESS_QUOTAS` per-tenant overrides)."""

    #: Seconds JetStream waits for an ack before redelivering; heartbeats go out at a third of it.
    ack_wait_seconds: float = Field(default=60.0, gt=0)
    #: Attempts per job (each a delivery); a worker that dies on the last one still gets the job failed
    #: (the consumers allow one delivery more, which only fails the job).
    max_deliver: int = Field(default=3, ge=1)
    #: An idle worker looks for work again after at most this many seconds (sooner right after a job).
    job_idle_poll_max_seconds: float = Field(default=2.0, gt=0)

    #: A `queued` record whose work-queue message is still missing this many seconds after it was written
    #: is failed (its publish failed). Far above a publish's own timeout, so an in-flight submit is never
    #: taken for an orphan.
    job_orphan_grace_seconds: float = Field(default=120.0, gt=0)
    #: How often each serve replica looks for such records (one listing of the bucket per sweep).
    job_orphan_sweep_interval_seconds: float = Field(default=60.0, gt=0)
