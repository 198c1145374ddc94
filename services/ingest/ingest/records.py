"""The `photos` KV bucket (owned by ingest), keyed `<tenant>.<subject>.<photo>`: verdicts, never pixels."""

from __future__ import annotations

import logging

from nats.js.kv import KeyValue

from likeness.bus import Bus, kv_forget, kv_get, kv_keys
from likeness.v1 import ingest_pb2

log = logging.getLogger(__name__)
PHOTOS_BUCKET = "photos"


class PhotoRecords:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, bus: Bus) -> PhotoRecords:
        return cls(await bus.kv(PHOTOS_BUCKET))

    async def put(self, photo: ingest_pb2.Photo) -> None:
        await self.kv.put(self.key_of(photo), photo.SerializeToString())

    async def list(self, tenant: str, subject_id: str) -> list[ingest_pb2.Photo]:
        """The subject's photo records, less those being deleted; a record that is not the one its key
        names is left out (nothing is ever derived from a record that lies about whose photo it is)."""
        photos = []
        for key in await kv_keys(self.kv, f"{tenant}.{subject_id}."):
            found = await kv_get(self.kv, key, ingest_pb2.Photo)
            if found is None:
                continue
            photo = found[0]
            if (photo.tenant, photo.subject_id) != (tenant, subject_id) or key != self.key_of(photo):
                log.warning("a photo record does not match its key; ignored")
                continue
            if photo.HasField("deletion_requested_at"):
                continue  # a per-item deletion has begun (`ingest.deletion`): gone for every reader
            photos.append(photo)
        return sorted(photos, key=lambda p: p.id)

    @staticmethod
    def key_of(photo: ingest_pb2.Photo) -> str:
        return f"{photo.tenant}.{photo.subject_id}.{photo.id}"

    async def purge_subject(self, tenant: str, subject_id: str) -> int:
        keys = await kv_keys(self.kv, f"{tenant}.{subject_id}.")
        # One purge of the stream by subject: no purge marker keeps a key that names the person.
        await kv_forget(self.kv, f"{tenant}.{subject_id}.>")
        return len(keys)
