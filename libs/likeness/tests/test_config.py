"""Production settings refuse development secrets, secrets in the environment, plaintext endpoints (OTLP
included) and the development token audience; production is the default; secrets are read from the files
of `LIKENESS_SECRETS_DIR`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import SecretStr, ValidationError

from likeness.config import DEV_JWT_AUDIENCE, SECRETS_DIR_VARIABLE, CommonSettings, secret_field_names

STRONG = "x" * 40
PRODUCTION = {
    "env": "production",
    "nats_url": "tls://nats.example:4222",
    "s3_endpoint": "https://s3.example",
    "vault_addr": "https://vault.example:8200",
    "vault_auth": "kubernetes",
    "s3_secret_key": STRONG,
    # Every service verifies end users' tokens against the identity provider's keys (issue 14, part S2).
    "jwks_url": "https://idp.example/.well-known/jwks.json",
    "jwt_issuer": "https://idp.example/",
    "jwt_audience": "https://api.example/",
    "otlp_endpoint": "https://otel.example:4317",
}


class WithKey(CommonSettings):
    """A service with a key of its own (as retention's HMAC secret or the gateway's idempotency key)."""

    key_secrets: ClassVar[tuple[str, ...]] = ("signing_secret",)
    signing_secret: SecretStr = SecretStr("likeness-dev")


def test_development_defaults_are_accepted_in_development() -> None:
    assert CommonSettings(env="development").vault_token.get_secret_value() == "dev"


def test_the_default_environment_is_production(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, LIKENESS_ENV means production: an image run outside the chart refuses dev secrets."""
    for name in [name for name in os.environ if name.startswith("LIKENESS_")]:
        monkeypatch.delenv(name)  # LIKENESS_ENV among them: nothing says which environment this is
    assert CommonSettings.model_fields["env"].default == "production"
    with pytest.raises(ValidationError, match="LIKENESS_VAULT_TOKEN is a development value"):
        CommonSettings()
    without_env = {key: value for key, value in PRODUCTION.items() if key != "env"}
    assert CommonSettings.model_validate(without_env).is_production


@pytest.mark.parametrize(
    ("endpoint", "complaint"),
    [
        ("http://otel.example:4317", "LIKENESS_OTLP_ENDPOINT must use https:// in production"),
        ("otel.example:4317", "LIKENESS_OTLP_ENDPOINT must be https://host:port"),
        ("grpc://otel.example:4317", "LIKENESS_OTLP_ENDPOINT must be https://host:port"),
        ("https://", "LIKENESS_OTLP_ENDPOINT must be https://host:port"),
    ],
)
def test_production_refuses_plaintext_otlp(endpoint: str, complaint: str) -> None:
    assert CommonSettings.model_validate(PRODUCTION).otlp_endpoint == "https://otel.example:4317"
    with pytest.raises(ValidationError, match=complaint):
        CommonSettings.model_validate(PRODUCTION | {"otlp_endpoint": endpoint})


def test_production_wants_every_server_of_a_nats_cluster_over_tls() -> None:
    cluster = "tls://nats-0.example:4222,tls://nats-1.example:4222,tls://nats-2.example:4222"
    assert CommonSettings.model_validate(PRODUCTION | {"nats_url": cluster}).nats_url == cluster
    with pytest.raises(ValidationError, match="LIKENESS_NATS_URL must use tls://"):
        CommonSettings.model_validate(PRODUCTION | {"nats_url": "tls://a:4222,nats://b:4222"})


def test_development_may_export_plaintext_otlp_but_not_without_a_scheme() -> None:
    """Without a scheme the exporter would pick TLS or not from OTEL_EXPORTER_OTLP_INSECURE: refused."""
    assert CommonSettings(env="development", otlp_endpoint="http://127.0.0.1:4317").otlp_endpoint
    with pytest.raises(ValidationError, match="LIKENESS_OTLP_ENDPOINT must be https://host:port"):
        CommonSettings(env="development", otlp_endpoint="127.0.0.1:4317")


@pytest.mark.parametrize("audience", [DEV_JWT_AUDIENCE, "", "  "])
def test_production_refuses_the_default_audience(audience: str) -> None:
    with pytest.raises(ValidationError, match="set LIKENESS_JWT_AUDIENCE to this deployment's own audience"):
        CommonSettings.model_validate(PRODUCTION | {"jwt_audience": audience})
    without_audience = {key: value for key, value in PRODUCTION.items() if key != "jwt_audience"}
    with pytest.raises(ValidationError, match="LIKENESS_JWT_AUDIENCE"):
        CommonSettings.model_validate(without_audience)


def test_a_refusal_never_quotes_the_values_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pydantic would quote the input (`input_value=...`, cut at ~50 characters): the start of a secret."""
    monkeypatch.setenv("LIKENESS_S3_SECRET_KEY", "zq7-a-secret-that-must-not-be-printed")
    with pytest.raises(ValidationError) as refused:
        CommonSettings.model_validate(PRODUCTION | {"vault_token": "zq8-another-secret-value"})
    message = str(refused.value)
    assert "LIKENESS_S3_SECRET_KEY is set in the environment" in message
    assert "input_value" not in message
    assert "zq7" not in message
    assert "zq8" not in message


def test_production_with_real_values_is_accepted() -> None:
    assert CommonSettings.model_validate(PRODUCTION).is_production


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("signing_secret", "likeness-dev", "LIKENESS_SIGNING_SECRET"),
        ("signing_secret", "short", "at least 32"),
        ("s3_secret_key", "minioadmin", "LIKENESS_S3_SECRET_KEY"),
        ("nats_url", "nats://nats:4222", "LIKENESS_NATS_URL"),
        ("s3_endpoint", "http://s3:8333", "LIKENESS_S3_ENDPOINT"),
        ("vault_addr", "http://vault:8200", "LIKENESS_VAULT_ADDR"),
    ],
)
def test_production_refuses_development_values(field: str, value: str, complaint: str) -> None:
    assert WithKey.model_validate({**PRODUCTION, "signing_secret": STRONG}).is_production
    with pytest.raises(ValidationError, match=complaint):
        WithKey.model_validate({**PRODUCTION, "signing_secret": STRONG, field: value})


def test_production_token_auth_refuses_the_dev_token() -> None:
    with pytest.raises(ValidationError, match="LIKENESS_VAULT_TOKEN"):
        CommonSettings.model_validate({**PRODUCTION, "vault_auth": "token", "vault_token": "dev"})


def test_environment_variables_use_the_likeness_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIKENESS_S3_BUCKET", "from-env")
    assert CommonSettings().s3_bucket == "from-env"


def test_a_service_without_storage_is_not_asked_for_storage_secrets() -> None:
    class NoStorage(CommonSettings):
        uses_storage: ClassVar[bool] = False

    values = {k: v for k, v in PRODUCTION.items() if k not in {"s3_secret_key", "s3_endpoint", "vault_addr"}}
    assert NoStorage.model_validate(values).is_production
    with pytest.raises(ValidationError, match="LIKENESS_S3_ENDPOINT"):
        CommonSettings.model_validate(values)


def test_secrets_are_read_from_the_files_of_the_secrets_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "s3_secret_key").write_text("from-a-file\n")
    (tmp_path / "signing_secret").write_text("s" * 40)
    monkeypatch.setenv(SECRETS_DIR_VARIABLE, str(tmp_path))
    settings = WithKey()
    assert settings.s3_secret_key.get_secret_value() == "from-a-file"
    assert settings.signing_secret.get_secret_value() == "s" * 40
    assert settings.vault_token.get_secret_value() == "dev", "a secret without a file keeps its default"


def test_production_refuses_a_secret_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIKENESS_S3_SECRET_KEY", STRONG)
    with pytest.raises(ValidationError, match="LIKENESS_S3_SECRET_KEY is set in the environment"):
        CommonSettings.model_validate(
            {key: value for key, value in PRODUCTION.items() if key != "s3_secret_key"}
        )
    assert CommonSettings().s3_secret_key.get_secret_value() == STRONG, "development still reads it"
    monkeypatch.delenv("LIKENESS_S3_SECRET_KEY")
    (tmp_path / "s3_secret_key").write_text(STRONG)
    monkeypatch.setenv(SECRETS_DIR_VARIABLE, str(tmp_path))
    values = {key: value for key, value in PRODUCTION.items() if key != "s3_secret_key"}
    assert CommonSettings.model_validate(values).s3_secret_key.get_secret_value() == STRONG


def test_secret_settings_are_the_secretstr_ones() -> None:
    assert set(secret_field_names(WithKey)) == {
        "s3_access_key",
        "s3_secret_key",
        "vault_token",
        "signing_secret",
        "nats_password",  # issue 14, part P: one NATS user per identity
        "jwt_dev_secret",  # issue 14, part S2: development tokens only (refused in production)
    }
