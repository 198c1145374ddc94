"""A subject's face templates: the biometric part of each accepted photo, stored only encrypted.

A template is the photo's 128-D identity embedding and its perceptual hash. Each accepted photo has one,
in its own object next to its crop (``face_template_key``, kind ``face``), sealed under the subject's
key: erasing the subject shreds it with everything else, and deleting a photo deletes its template with
it, with no other object to rewrite. Objects written once are never changed, so replicas writing for
one subject at the same time cannot lose each other's templates.

Reading them back (for the duplicate and same-person checks) is one S3 listing, one GET per photo (at
most ``SubjectRules.max_photos``, each under 1 KB) and a single batched Vault decrypt of their data keys.

When a training succeeds, the trainer copies the embeddings of the photos it trained on into one object
sealed beside the model (`likeness.object_names.model_faces_key`, `likeness_ml.face_templates`), so the
renderer's identity gate outlives these per-photo templates, which expire with their photos.

Layout (little-endian): ``b"LKFT"``, version (1 byte, 1), 3 reserved zero bytes, the hash (u64), then
the embedding as 128 float32. Version 0, the first layout, is the bare 128 float32 (no hash).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from likeness.object_names import face_template_key
from likeness.sealed import ObjectRef, SealedObjects
from likeness.store import ObjectMissing, ObjectStore

TEMPLATE_KIND = "face"
EMBEDDING_SIZE = 128
_MAGIC = b"LKFT"
_VERSION = 1
_HEADER = struct.Struct("<4sB3xQ")
_EMBEDDING = struct.Struct(f"<{EMBEDDING_SIZE}f")


@dataclass(frozen=True)
class FaceTemplate:
    """Biometric data: kept out of repr() so it never reaches a log."""

    embedding: tuple[float, ...] = field(repr=False)
    perceptual_hash: int | None = field(repr=False)
    """None for templates stored before hashes were kept."""

    def to_bytes(self) -> bytes:
        if len(self.embedding) != EMBEDDING_SIZE:
            raise ValueError(f"an embedding has {EMBEDDING_SIZE} values")
        if self.perceptual_hash is None:
            raise ValueError("a new template needs its perceptual hash")
        return _HEADER.pack(_MAGIC, _VERSION, self.perceptual_hash) + _EMBEDDING.pack(*self.embedding)

    @classmethod
    def from_bytes(cls, data: bytes) -> FaceTemplate:
        if len(data) == _EMBEDDING.size:  # version 0
            return cls(embedding=_EMBEDDING.unpack(data), perceptual_hash=None)
        if len(data) != _HEADER.size + _EMBEDDING.size:
            raise ValueError("not a face template")
        magic, version, photo_hash = _HEADER.unpack_from(data)
        if magic != _MAGIC or version != _VERSION:
            raise ValueError("not a face template of a known version")
        return cls(embedding=_EMBEDDING.unpack_from(data, _HEADER.size), perceptual_hash=photo_hash)

    def as_array(self) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
        return np.asarray(self.embedding, dtype=np.float64)


class SubjectTemplates:
    """Reads and writes one subject's templates. Blocking (S3 and Vault): call from a thread."""

    def __init__(self, sealed: SealedObjects, store: ObjectStore) -> None:
        self._sealed = sealed
        self._store = store

    @staticmethod
    def ref(tenant: str, subject_id: str, photo_id: str) -> ObjectRef:
        return ObjectRef(tenant, subject_id, face_template_key(tenant, subject_id, photo_id), TEMPLATE_KIND)

    def photo_ids(self, tenant: str, subject_id: str) -> list[str]:
        """The subject's photos that have a template, i.e. their accepted photos (one S3 listing)."""
        prefix = face_template_key(tenant, subject_id, "")
        return sorted(obj.key[len(prefix) :] for obj in self._store.list_current(prefix))

    def load(self, tenant: str, subject_id: str) -> dict[str, FaceTemplate]:
        """Every template of the subject, decrypted with one Vault round trip, by photo id."""
        for attempt in (1, 2):
            photo_ids = self.photo_ids(tenant, subject_id)
            refs = [self.ref(tenant, subject_id, photo_id) for photo_id in photo_ids]
            try:
                blobs = self._sealed.get_many(refs)
            except ObjectMissing:
                # Deleted between the listing and the read (a retention sweep): list again, once.
                if attempt == 2:
                    raise
                continue
            return {
                photo_id: FaceTemplate.from_bytes(blob)
                for photo_id, blob in zip(photo_ids, blobs, strict=True)
            }
        raise AssertionError("unreachable")

    def save(self, tenant: str, subject_id: str, photo_id: str, template: FaceTemplate) -> None:
        self._sealed.put(self.ref(tenant, subject_id, photo_id), template.to_bytes())

    def discard(self, tenant: str, subject_id: str, photo_id: str) -> None:
        """Deletes a photo's template, every version (undoing a save whose photo was not recorded)."""
        self._store.delete_all_versions(face_template_key(tenant, subject_id, photo_id))
