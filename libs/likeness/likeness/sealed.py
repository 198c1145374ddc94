"""Encrypted objects of one subject: envelope crypto + Vault data keys + the object store.

One data key per object (never per chunk) and one batched Vault call to unwrap many, so round trips
stay few. Plaintext exists only in this process's memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from likeness import envelope
from likeness.envelope import ObjectContext
from likeness.store import ObjectStore
from likeness.vault_transit import SubjectKeys


@dataclass(frozen=True)
class ObjectRef:
    tenant: str
    subject_id: str
    key: str
    kind: str

    @property
    def context(self) -> ObjectContext:
        return ObjectContext(tenant=self.tenant, subject=self.subject_id, object_key=self.key, kind=self.kind)


class SealedObjects:
    def __init__(self, keys: SubjectKeys, store: ObjectStore) -> None:
        self.keys = keys
        self.store = store

    def put(self, ref: ObjectRef, plaintext: bytes | Iterable[bytes]) -> int:
        """Encrypts under a fresh data key of the subject and uploads; returns stored (ciphertext) bytes."""
        data_key = self.keys.data_key(ref.subject_id)
        return self.store.put_stream(ref.key, envelope.seal(plaintext, data_key, ref.context))

    def get(self, ref: ObjectRef) -> bytes:
        return b"".join(self.stream(ref))

    def stream(self, ref: ObjectRef) -> Iterator[bytes]:
        header, rest = envelope.read_header(self.store.get_stream(ref.key))
        (plaintext_key,) = self.keys.unwrap(ref.subject_id, [header.wrapped_key])
        return envelope.open_stream(header, rest, plaintext_key, ref.context)

    def get_many(self, refs: Sequence[ObjectRef]) -> list[bytes]:
        """Decrypts several objects of ONE subject with a single Vault round trip."""
        subjects = {ref.subject_id for ref in refs}
        if len(subjects) > 1:
            raise ValueError("get_many reads the objects of one subject at a time")
        if not refs:
            return []
        blobs = [self.store.get_bytes(ref.key) for ref in refs]
        headers = [envelope.read_header(blob)[0] for blob in blobs]
        plaintext_keys = self.keys.unwrap(refs[0].subject_id, [h.wrapped_key for h in headers])
        return [
            envelope.open_bytes(blob, key, ref.context)
            for blob, key, ref in zip(blobs, plaintext_keys, refs, strict=True)
        ]
