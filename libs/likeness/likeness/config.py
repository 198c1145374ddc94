"""Settings shared by every service, read from `LIKENESS_*` environment variables.

Each service subclasses `CommonSettings` with its own fields, in one place, and reads it once through a
cached `get_settings()`. In production the settings refuse development secrets and plaintext endpoints.
"""

from __future__ import annotations

from typing import ClassVar, Literal
from urllib.parse import urlparse

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Values that only the dev stack may use; production refuses to start with any of them.
DEVELOPMENT_SECRETS = frozenset(
    {"", "dev", "development", "changeme", "secret", "likeness-dev", "minioadmin"}
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Scheme of each endpoint that counts as encrypted in transit.
SECURE_SCHEMES = {"nats_url": {"tls"}, "s3_endpoint": {"https"}, "vault_addr": {"https"}}


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIKENESS_", extra="ignore", frozen=True)

    env: Literal["development", "production"] = "development"
    log_level: str = "INFO"
    service_name: str = "likeness"

    nats_url: str = "nats://127.0.0.1:4222"

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

    #: Key for keyed HMACs of identifiers that must never appear in clear (audit, external refs).
    hmac_secret: SecretStr = SecretStr("likeness-dev")

    grpc_port: int = 50051
    metrics_port: int = 9464
    otlp_endpoint: str = ""

    #: Whether this service talks to S3 and Vault (the gateway does not: it holds no storage rights).
    uses_storage: ClassVar[bool] = True

    @model_validator(mode="after")
    def _refuse_development_values_in_production(self) -> CommonSettings:
        if self.env != "production":
            return self
        problems: list[str] = []
        secrets = {"hmac_secret": self.hmac_secret}
        if self.uses_storage:
            secrets["s3_secret_key"] = self.s3_secret_key
        if self.uses_storage and self.vault_auth == "token":
            secrets["vault_token"] = self.vault_token
        for name, value in secrets.items():
            if value.get_secret_value().strip().lower() in DEVELOPMENT_SECRETS:
                problems.append(f"LIKENESS_{name.upper()} is a development value")
        if len(self.hmac_secret.get_secret_value()) < 32:
            problems.append("LIKENESS_HMAC_SECRET must be at least 32 characters")
        for name, schemes in SECURE_SCHEMES.items():
            if name != "nats_url" and not self.uses_storage:
                continue
            url = urlparse(getattr(self, name))
            if url.scheme not in schemes:
                problems.append(
                    f"LIKENESS_{name.upper()} must use {'/'.join(sorted(schemes))}:// in production"
                )
        if problems:
            raise ValueError("refusing production settings: " + "; ".join(problems))
        return self

    @property
    def is_production(self) -> bool:
        return self.env == "production"
