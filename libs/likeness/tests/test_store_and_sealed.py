"""Object store and sealed objects against a real S3 server (SeaweedFS) and OpenBao."""

from __future__ import annotations

import os
import uuid

import pytest

from likeness.config import CommonSettings
from likeness.envelope import ContextMismatch
from likeness.sealed import ObjectRef, SealedObjects
from likeness.store import ObjectMissing, ObjectStore, StoreError
from likeness.vault_transit import SubjectKeys


@pytest.fixture
def store(settings: CommonSettings) -> ObjectStore:
    return ObjectStore.from_settings(settings)


@pytest.fixture
def sealed(settings: CommonSettings, store: ObjectStore) -> SealedObjects:
    return SealedObjects(SubjectKeys.from_settings(settings), store)


def _prefix() -> str:
    return f"t/test/s/sub_{uuid.uuid4().hex[:20]}/"


def test_streaming_put_and_get(store: ObjectStore) -> None:
    key = _prefix() + "blob"
    pieces = [os.urandom(700_000) for _ in range(30)]  # ~21 MB: more than one multipart part
    written = store.put_stream(key, iter(pieces))
    assert written == sum(map(len, pieces))
    assert b"".join(store.get_stream(key)) == b"".join(pieces)


def test_delete_removes_every_version(store: ObjectStore) -> None:
    prefix = _prefix()
    for version in range(3):
        store.put_bytes(prefix + "photos/a", f"v{version}".encode())
    store.put_bytes(prefix + "photos/b", b"b")
    assert len(store.list_versions(prefix)) == 4, "the bucket is versioned"
    objects, size = store.delete_all_versions(prefix)
    assert objects == 2
    assert size == 2 + 2 + 2 + 1
    assert store.list_versions(prefix) == []
    with pytest.raises(ObjectMissing):
        store.get_bytes(prefix + "photos/a")


def test_wrong_credentials_are_refused(settings: CommonSettings) -> None:
    from pydantic import SecretStr

    wrong = ObjectStore.from_settings(
        settings.model_copy(update={"s3_secret_key": SecretStr("not-the-secret")})
    )
    with pytest.raises(StoreError):
        wrong.put_bytes(_prefix() + "x", b"x")


def test_sealed_roundtrip_and_binding(sealed: SealedObjects, store: ObjectStore) -> None:
    subject = f"sub_{uuid.uuid4().hex[:20]}"
    sealed.keys.create(subject)
    prefix = f"t/test/s/{subject}/"
    refs = [ObjectRef("test", subject, f"{prefix}photos/{n}", "photo") for n in range(3)]
    payloads = [os.urandom(50_000 + n) for n in range(3)]
    for ref, payload in zip(refs, payloads, strict=True):
        sealed.put(ref, payload)
        assert payload[:64] not in store.get_bytes(ref.key), "only ciphertext is stored"
    assert sealed.get_many(refs) == payloads
    assert b"".join(sealed.stream(refs[0])) == payloads[0]

    # An object moved to another key (or claimed as another kind) does not open.
    store.put_bytes(f"{prefix}photos/moved", store.get_bytes(refs[0].key))
    with pytest.raises(ContextMismatch):
        sealed.get(ObjectRef("test", subject, f"{prefix}photos/moved", "photo"))
    with pytest.raises(ContextMismatch):
        sealed.get(ObjectRef("test", subject, refs[0].key, "render"))
    store.delete_all_versions(prefix)
