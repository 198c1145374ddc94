"""Subject keys against a real Vault-API server (OpenBao dev mode)."""

from __future__ import annotations

import base64
import uuid

import hvac
import pytest

from likeness.config import CommonSettings
from likeness.vault_transit import KeyDestroyed, KeyError_, SubjectKeys, VaultUnavailable, key_name


@pytest.fixture
def keys(settings: CommonSettings) -> SubjectKeys:
    return SubjectKeys.from_settings(settings)


def _subject() -> str:
    return f"sub_test{uuid.uuid4().hex[:16]}"


def test_a_subject_key_is_created_locked_down(keys: SubjectKeys, settings: CommonSettings) -> None:
    subject = _subject()
    keys.create(subject)
    client = hvac.Client(url=settings.vault_addr, token=settings.vault_token.get_secret_value())
    config = client.secrets.transit.read_key(key_name(subject))["data"]
    assert config["type"] == "aes256-gcm96"
    assert config["exportable"] is False
    assert config["allow_plaintext_backup"] is False
    assert config["deletion_allowed"] is True


def test_data_keys_unwrap_in_one_batch(keys: SubjectKeys) -> None:
    subject = _subject()
    keys.create(subject)
    data_keys = [keys.data_key(subject) for _ in range(3)]
    assert len({k.plaintext for k in data_keys}) == 3, "every object gets its own data key"
    assert all(len(k.plaintext) == 32 for k in data_keys)
    assert all(k.wrapped.startswith("vault:v1:") for k in data_keys)
    assert keys.unwrap(subject, [k.wrapped for k in data_keys]) == [k.plaintext for k in data_keys]


def test_destroyed_key_is_reported_as_destroyed(keys: SubjectKeys) -> None:
    subject = _subject()
    keys.create(subject)
    wrapped = keys.data_key(subject).wrapped
    assert keys.destroy(subject) is True
    assert keys.destroy(subject) is False, "destroying twice is harmless"
    assert not keys.exists(subject)
    with pytest.raises(KeyDestroyed):
        keys.unwrap(subject, [wrapped])
    with pytest.raises(KeyDestroyed):
        keys.data_key(subject)


def test_a_key_of_another_subject_cannot_unwrap(keys: SubjectKeys) -> None:
    owner, other = _subject(), _subject()
    keys.create(owner)
    keys.create(other)
    wrapped = keys.data_key(owner).wrapped
    with pytest.raises(KeyError_, match=r"decrypt|unwrap") as caught:
        keys.unwrap(other, [wrapped])
    assert not isinstance(caught.value, KeyDestroyed)


def test_unreachable_vault_is_reported_as_unavailable(settings: CommonSettings) -> None:
    unreachable = settings.model_copy(
        update={"vault_addr": "http://127.0.0.1:9", "vault_timeout_seconds": 1.0}
    )
    keys = SubjectKeys.from_settings(unreachable)
    with pytest.raises(VaultUnavailable):
        keys.data_key(_subject())
    assert keys.is_available() is False


def test_plaintext_key_never_in_repr(keys: SubjectKeys) -> None:
    subject = _subject()
    keys.create(subject)
    data_key = keys.data_key(subject)
    assert base64.b64encode(data_key.plaintext).decode() not in repr(data_key)
    assert data_key.plaintext.hex() not in repr(data_key)
