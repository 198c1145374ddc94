"""Library tests against the real servers: settings pointing at the session's NATS, S3 and OpenBao."""

from __future__ import annotations

import pytest

from likeness.config import CommonSettings
from likeness_dev.infra import Infra


def settings_for(infra: Infra) -> CommonSettings:
    env = infra.endpoints.as_env()
    return CommonSettings.model_validate(
        {key.removeprefix("LIKENESS_").lower(): value for key, value in env.items()}
    )


@pytest.fixture(scope="session")
def settings(infra: Infra) -> CommonSettings:
    return settings_for(infra)
