"""Short-lived Vault tokens (Kubernetes auth in a cluster) are renewed before they expire and after a
refusal, against a real Vault-API server. Logins here mint child tokens of the dev root token, which is
what a Kubernetes-auth login hands back too: a token with a TTL."""

from __future__ import annotations

import uuid

import hvac
import pytest

from likeness.config import CommonSettings
from likeness.vault_transit import KeyAccessDenied, SubjectKeys


class ShortTokens:
    """A `Login` that hands the client a fresh child token (TTL `ttl`) and counts its calls."""

    def __init__(self, root: hvac.Client, ttl: int = 60) -> None:
        self.root = root
        self.ttl = ttl
        self.logins = 0
        self.tokens: list[str] = []

    def __call__(self, client: hvac.Client) -> float:
        created = self.root.auth.token.create(policies=["root"], ttl=f"{self.ttl}s", renewable=False)
        client.token = created["auth"]["client_token"]
        self.tokens.append(client.token)
        self.logins += 1
        return float(created["auth"]["lease_duration"])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def root(settings: CommonSettings) -> hvac.Client:
    return hvac.Client(url=settings.vault_addr, token=settings.vault_token.get_secret_value())


def _keys(settings: CommonSettings, login: ShortTokens, clock: FakeClock) -> SubjectKeys:
    client = hvac.Client(url=settings.vault_addr, timeout=settings.vault_timeout_seconds)
    return SubjectKeys(client, settings.vault_transit_mount, login=login, clock=clock)


def _subject() -> str:
    return f"sub_test{uuid.uuid4().hex[:16]}"


def test_logs_in_again_when_the_ttl_is_mostly_spent(settings: CommonSettings, root: hvac.Client) -> None:
    login, clock = ShortTokens(root, ttl=60), FakeClock()
    keys = _keys(settings, login, clock)
    subject = _subject()
    keys.create(subject)
    keys.data_key(subject)
    assert login.logins == 1
    clock.now += 60 * 0.5
    keys.data_key(subject)
    assert login.logins == 1  # still fresh
    clock.now += 60 * 0.25  # 75% of the TTL: due
    keys.data_key(subject)
    assert login.logins == 2
    keys.destroy(subject)


def test_a_revoked_token_is_replaced(settings: CommonSettings, root: hvac.Client) -> None:
    login, clock = ShortTokens(root), FakeClock()
    keys = _keys(settings, login, clock)
    subject = _subject()
    keys.create(subject)
    root.auth.token.revoke(login.tokens[-1])
    wrapped = keys.data_key(subject).wrapped  # refused once, logged in again, done
    assert login.logins == 2
    assert len(keys.unwrap(subject, [wrapped])) == 1
    keys.destroy(subject)


def test_without_a_login_a_refusal_is_reported(settings: CommonSettings, root: hvac.Client) -> None:
    created = root.auth.token.create(policies=["default"], ttl="60s")
    client = hvac.Client(url=settings.vault_addr, token=created["auth"]["client_token"])
    with pytest.raises(KeyAccessDenied):
        SubjectKeys(client, settings.vault_transit_mount).data_key(_subject())
