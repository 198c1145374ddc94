"""The `photos` KV bucket (owned by ingest), keyed `<tenant>.<subject>.<photo>`: verdicts, never pixels."""

from __future__ import annotations

from nats.js.kv import KeyValue

from likeness.bus import Bus, kv_get, kv_keys
from likeness.v1 import ingest_pb2

PHOTOS_BUCKET = "photos"


class PhotoRecords:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, bus: Bus) -> PhotoRecords:
        return cls(await bus.kv(PHOTOS_BUCKET))

    async def put(self, photo: ingest_pb2.Photo) -> None:
        await self.kv.put(f"{photo.tenant}.{photo.subject_id}.{photo.id}", photo.SerializeToString())

    async def list(self, tenant: str, subject_id: str) -> list[ingest_pb2.Photo]:
        photos = []
        for key in await kv_keys(self.kv, f"{tenant}.{subject_id}."):
            found = await kv_get(self.kv, key, ingest_pb2.Photo)
            if found is not None:
                photos.append(found[0])
        return sorted(photos, key=lambda p: p.id)

    async def purge_subject(self, tenant: str, subject_id: str) -> int:
        keys = await kv_keys(self.kv, f"{tenant}.{subject_id}.")
        for key in keys:
            await self.kv.purge(key)
        return len(keys)
