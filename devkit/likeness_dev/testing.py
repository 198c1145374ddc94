"""Pytest plugin (loaded by the root conftest.py): the real NATS, S3 and Vault-API servers for tests.

    def test_something(infra: Infra, infra_env: dict[str, str]) -> None: ...

The servers start on first use, once per session, in a pytest tmp dir, and stop at the end of the
session. They never outlive it: stopped at session end, at interpreter exit (atexit, also after Ctrl-C),
and killed by the kernel if pytest itself is killed (see `ManagedProcess.die_with_parent`).
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator

import pytest

from likeness_dev.infra import Infra, start_infra

_running: list[Infra] = []


def _stop_all() -> None:
    while _running:
        _running.pop().stop(grace=5.0)


atexit.register(_stop_all)


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """NATS JetStream, SeaweedFS S3 (bucket with versioning) and OpenBao (transit mounted), running."""
    started = Infra(tmp_path_factory.mktemp("infra"))
    _running.append(started)
    try:
        started.start()
        yield started
    finally:
        started.stop()
        if started in _running:
            _running.remove(started)


@pytest.fixture(scope="session")
def infra_env(infra: Infra) -> dict[str, str]:
    """The LIKENESS_* settings of the running servers (a plain dict: pass it as `env=` or to settings)."""
    return infra.endpoints.as_env()


__all__ = ["infra", "infra_env", "start_infra"]
