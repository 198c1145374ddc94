"""Per-item deletion of one photo, ingest's half (see `likeness.item_deletion` for the whole flow).

Ingest owns the photo's record: it marks it (hidden from every listing, export and count from then on),
and once retention has removed every version of the crop and its face template it forgets the record and
audits `photo.deleted` with the notice that this is not a crypto-erase.
"""

from __future__ import annotations

import nats.js.errors

from ingest.records import PhotoRecords
from likeness.bus import kv_forget, kv_get
from likeness.item_deletion import ItemNotFound, NotMarked, is_marked
from likeness.timeutil import now_timestamp
from likeness.v1 import ingest_pb2

#: Compare-and-set attempts against a concurrent write of the same record.
ATTEMPTS = 5


def _key(tenant: str, subject_id: str, photo_id: str) -> str:
    return f"{tenant}.{subject_id}.{photo_id}"


async def _get(
    records: PhotoRecords, tenant: str, subject_id: str, photo_id: str
) -> tuple[ingest_pb2.Photo, int]:
    key = _key(tenant, subject_id, photo_id)
    found = await kv_get(records.kv, key, ingest_pb2.Photo)
    # A record that is not the one its key names is nobody's photo to delete (nor to purge for).
    if found is None or PhotoRecords.key_of(found[0]) != key:
        raise ItemNotFound(photo_id)
    return found


async def mark_photo(records: PhotoRecords, tenant: str, subject_id: str, photo_id: str) -> ingest_pb2.Photo:
    """Marks the photo's record for deletion (a retry finds it marked and changes nothing)."""
    for _ in range(ATTEMPTS):
        photo, revision = await _get(records, tenant, subject_id, photo_id)
        if is_marked(photo):
            return photo
        photo.deletion_requested_at.CopyFrom(now_timestamp())
        try:
            await records.kv.update(
                _key(tenant, subject_id, photo_id), photo.SerializeToString(), last=revision
            )
        except nats.js.errors.KeyWrongLastSequenceError:
            continue
        return photo
    raise RuntimeError("the photo record kept changing under us")


async def marked_photo(
    records: PhotoRecords, tenant: str, subject_id: str, photo_id: str
) -> ingest_pb2.Photo:
    """The photo's record, if its deletion has begun (NotMarked otherwise: nothing was purged for it)."""
    photo, _ = await _get(records, tenant, subject_id, photo_id)
    if not is_marked(photo):
        raise NotMarked(photo_id)
    return photo


async def forget_photo(records: PhotoRecords, tenant: str, subject_id: str, photo_id: str) -> None:
    """Forgets the photo's record, leaving no revision or marker that names the subject."""
    await kv_forget(records.kv, _key(tenant, subject_id, photo_id))
