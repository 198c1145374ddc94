"""A subject's stored crops, decrypted for their data export (GDPR access and portability).

Ingest owns the photos, so it is the one that decrypts them: the gateway, which builds the export
archive, holds no Vault rights. Crops go out one at a time (each is a small PNG), so at most one is held
in memory however many the subject has. A crop already deleted by retention (after a training, or on its
deadline) is skipped: the export holds what is held, and the record still says the photo existed.

The face templates (`ExportFaceTemplates`) go out as numbers, the embedding and the perceptual hash of each
photo still held: a person is owed their biometric data too, in a form they can read (JSON, in the
archive), not as our binary layout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from ingest.templates import SubjectTemplates
from likeness.ids import is_valid_id
from likeness.object_names import photo_key
from likeness.sealed import ObjectRef, SealedObjects
from likeness.store import ObjectMissing
from likeness.v1 import common_pb2, ingest_pb2

log = logging.getLogger(__name__)

#: Stored crops are PNGs that carry pixels and nothing else (see `ingest.encode`).
CROP_CONTENT_TYPE = "image/png"
CHUNK = 256 * 1024


async def exported_photos(
    sealed: SealedObjects, tenant: str, subject_id: str, photos: list[ingest_pb2.Photo]
) -> AsyncIterator[ingest_pb2.ExportPhotosResponse]:
    """For each accepted photo of `subject_id` whose crop is still stored: its header, then its bytes.

    `tenant` and `subject_id` are the request's, checked against the caller's token: the object and the
    key that opens it are named from them and the photo's id, never from the record's own fields (a record
    naming another subject is skipped). Raises what reading a sealed object raises (`KeyDestroyed`,
    `VaultUnavailable`, `StoreError`...), for the caller to turn into a gRPC status; a crop that is simply
    gone is skipped.
    """
    sent = skipped = 0
    for photo in photos:
        if photo.status != ingest_pb2.PHOTO_STATUS_ACCEPTED:
            continue
        if (photo.tenant, photo.subject_id) != (tenant, subject_id) or not is_valid_id(photo.id, "pho"):
            log.warning("a photo record names another subject; skipped")
            continue
        ref = ObjectRef(tenant, subject_id, photo_key(tenant, subject_id, photo.id), "photo")
        try:
            data = await asyncio.to_thread(sealed.get, ref)
        except ObjectMissing:
            skipped += 1
            continue
        yield ingest_pb2.ExportPhotosResponse(
            photo=ingest_pb2.ExportedPhoto(photo_id=photo.id, content_type=CROP_CONTENT_TYPE)
        )
        for start in range(0, len(data), CHUNK):
            yield ingest_pb2.ExportPhotosResponse(chunk=data[start : start + CHUNK])
        del data
        sent += 1
    log.info("photos exported", extra={"photos": sent, "photos_gone": skipped})


def exported_templates(
    templates: SubjectTemplates, tenant: str, subject_id: str
) -> list[common_pb2.FaceEmbedding]:
    """Every face template of the subject still held, decrypted (one batched Vault call), by photo id.
    Blocking (S3 and Vault): call from a thread. Raises what reading sealed objects raises."""
    return [
        common_pb2.FaceEmbedding(
            photo_id=photo_id,
            values=template.embedding,
            perceptual_hash=f"{template.perceptual_hash:016x}"
            if template.perceptual_hash is not None
            else "",
        )
        for photo_id, template in sorted(templates.load(tenant, subject_id).items())
    ]
