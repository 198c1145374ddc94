"""Settings shared by every service, read from `LIKENESS_*` environment variables and secret files.

Each service subclasses `CommonSettings` with its own fields, in one place, and reads it once through a
cached `get_settings()`. Secrets (every `SecretStr` setting) come from files: `LIKENESS_SECRETS_DIR` names
a directory with one file per secret, named after the setting (`s3_secret_key`, `vault_token`...), as a
Kubernetes Secret mounted as a volume lays them out. A process holds only the secrets its settings
declare. In production the settings refuse development secrets, plaintext endpoints, and a secret given
as an environment variable (those leak into `/proc/<pid>/environ`, crash reports and child processes).
"""

from __future__ import annotations

import os
from typing import ClassVar, Literal
from urllib.parse import urlparse

from pydantic import SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

#: Values that only the dev stack may use; production refuses to start with any of them.
DEVELOPMENT_SECRETS = frozenset(
    {"", "dev", "development", "changeme", "secret", "likeness-dev", "minioadmin"}
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Scheme of each endpoint that counts as encrypted in transit.
SECURE_SCHEMES = {"nats_url": {"tls"}, "s3_endpoint": {"https"}, "vault_addr": {"https"}}
ENV_PREFIX = "LIKENESS_"
#: The directory of secret files (one per secret setting, named after it).
SECRETS_DIR_VARIABLE = "LIKENESS_SECRETS_DIR"


def secret_field_names(settings_cls: type[BaseSettings]) -> list[str]:
    """The settings of `settings_cls` that hold secrets (annotated `SecretStr`)."""
    return [name for name, field in settings_cls.model_fields.items() if field.annotation is SecretStr]


def secrets_in_environment(settings_cls: type[BaseSettings]) -> list[str]:
    """Environment variables that set one of the class's secrets (refused in production)."""
    names = {f"{ENV_PREFIX}{name}".upper() for name in secret_field_names(settings_cls)}
    return sorted(key for key in os.environ if key.upper() in names)


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

    grpc_port: int = 50051
    metrics_port: int = 9464
    otlp_endpoint: str = ""

    #: Whether this service talks to S3 and Vault (the gateway does not: it holds no storage rights).
    uses_storage: ClassVar[bool] = True
    #: Secrets of the service that are keys (HMAC, sealing): production wants at least 32 characters and
    #: no development value.
    key_secrets: ClassVar[tuple[str, ...]] = ()

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
        return secrets

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
