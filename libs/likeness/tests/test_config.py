"""Production settings refuse development secrets and plaintext endpoints."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import ValidationError

from likeness.config import CommonSettings

STRONG = "x" * 40
PRODUCTION = {
    "env": "production",
    "nats_url": "tls://nats.example:4222",
    "s3_endpoint": "https://s3.example",
    "vault_addr": "https://vault.example:8200",
    "vault_auth": "kubernetes",
    "s3_secret_key": STRONG,
    "hmac_secret": STRONG,
}


def test_development_defaults_are_accepted_in_development() -> None:
    assert CommonSettings().env == "development"


def test_production_with_real_values_is_accepted() -> None:
    assert CommonSettings.model_validate(PRODUCTION).is_production


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("hmac_secret", "likeness-dev", "LIKENESS_HMAC_SECRET"),
        ("hmac_secret", "short", "at least 32"),
        ("s3_secret_key", "minioadmin", "LIKENESS_S3_SECRET_KEY"),
        ("nats_url", "nats://nats:4222", "LIKENESS_NATS_URL"),
        ("s3_endpoint", "http://s3:8333", "LIKENESS_S3_ENDPOINT"),
        ("vault_addr", "http://vault:8200", "LIKENESS_VAULT_ADDR"),
    ],
)
def test_production_refuses_development_values(field: str, value: str, complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        CommonSettings.model_validate({**PRODUCTION, field: value})


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
