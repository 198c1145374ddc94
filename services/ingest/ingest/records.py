"""The `photos` KV bucket (owned by ingest), keyed `<tenant>.<subject>.<photo>`: verdicts, never pixels.

Photo ids sort by upload time, so a subject's keys, sorted, are its photos oldest first: a page reads only
the records it returns (plus those it must skip), whatever the subject holds (issue 18).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js.kv import KeyValue

from likeness.bus import Bus, kv_forget, kv_get, kv_keys
from likeness.record_pages import Page
from likeness.v1 import ingest_pb2

log = logging.getLogger(__name__)
PHOTOS_BUCKET = "photos"


@dataclass(frozen=True)
class RejectedBound:
    """How many rejected verdicts one subject keeps, and for how long (issue 18): a rejected photo stores
    nothing but its verdict, so without a bound a client could grow a subject's records without end."""

    max_per_subject: int = 200
    ttl_seconds: float = 30 * 24 * 3600.0


class PhotoRecords:
    def __init__(self, kv: KeyValue, rejected: RejectedBound = RejectedBound()) -> None:
        self.kv = kv
        self.rejected = rejected

    @classmethod
    async def open(cls, bus: Bus, rejected: RejectedBound = RejectedBound()) -> PhotoRecords:
        return cls(await bus.kv(PHOTOS_BUCKET), rejected)

    async def put(self, photo: ingest_pb2.Photo) -> None:
        await self.kv.put(self.key_of(photo), photo.SerializeToString())

    async def add_verdict(self, photo: ingest_pb2.Photo) -> None:
        """Writes a new photo's verdict. A rejected one expires on its own (a per-message TTL, so the
        server removes it without a sweeper) and pushes the subject's oldest rejected verdicts out past the
        bound; an accepted one is kept (ingest caps accepted photos per subject)."""
        if photo.status != ingest_pb2.PHOTO_STATUS_REJECTED:
            await self.put(photo)
            return
        await self._make_room_for_rejected(photo.tenant, photo.subject_id)
        await self.kv.create(self.key_of(photo), photo.SerializeToString(), msg_ttl=self.rejected.ttl_seconds)

    async def _make_room_for_rejected(self, tenant: str, subject_id: str) -> None:
        rejected_keys = [
            self.key_of(photo)
            for photo in await self.list(tenant, subject_id)
            if photo.status == ingest_pb2.PHOTO_STATUS_REJECTED
        ]
        # Oldest first (ids sort by upload time): keep room for the one being added.
        for key in rejected_keys[: max(0, len(rejected_keys) - self.rejected.max_per_subject + 1)]:
            await kv_forget(self.kv, key)

    async def list(self, tenant: str, subject_id: str) -> list[ingest_pb2.Photo]:
        """Every photo record of the subject, oldest first (see `read`)."""
        keys = await kv_keys(self.kv, f"{tenant}.{subject_id}.")
        return [photo for key in sorted(keys) if (photo := await self.read(key, tenant, subject_id))]

    async def page(
        self, tenant: str, subject_id: str, size: int, after_photo_id: str = ""
    ) -> Page[ingest_pb2.Photo]:
        """At most `size` photos uploaded after `after_photo_id`, oldest first, and the token of the next
        page ("" on the last): records are read only until the page is full."""
        prefix = f"{tenant}.{subject_id}."
        after = f"{prefix}{after_photo_id}" if after_photo_id else ""
        keys = sorted(key for key in await kv_keys(self.kv, prefix) if key > after)
        photos: list[ingest_pb2.Photo] = []
        for key in keys:
            if len(photos) == size:
                # More keys follow; the page ends at the last photo returned (those after may all be
                # deleted meanwhile: the next page is then empty, which a caller handles).
                return Page(photos, photos[-1].id)
            photo = await self.read(key, tenant, subject_id)
            if photo is not None:
                photos.append(photo)
        return Page(photos, "")

    async def read(self, key: str, tenant: str, subject_id: str) -> ingest_pb2.Photo | None:
        """The record under `key`, or None when absent, being deleted, or not the one its key names
        (nothing is ever derived from a record that lies about whose photo it is)."""
        found = await kv_get(self.kv, key, ingest_pb2.Photo)
        if found is None:
            return None
        photo = found[0]
        if (photo.tenant, photo.subject_id) != (tenant, subject_id) or key != self.key_of(photo):
            log.warning("a photo record does not match its key; ignored")
            return None
        if photo.HasField("deletion_requested_at"):
            return None  # a per-item deletion has begun (`ingest.deletion`): gone for every reader
        return photo

    @staticmethod
    def key_of(photo: ingest_pb2.Photo) -> str:
        return f"{photo.tenant}.{photo.subject_id}.{photo.id}"

    async def purge_subject(self, tenant: str, subject_id: str) -> int:
        keys = await kv_keys(self.kv, f"{tenant}.{subject_id}.")
        # One purge of the stream by subject: no purge marker keeps a key that names the person.
        await kv_forget(self.kv, f"{tenant}.{subject_id}.>")
        return len(keys)
