"""IngestService: receives an upload as a stream, sanitizes it in memory, stores only the encrypted crop."""

from __future__ import annotations

import array
import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from ingest.config import IngestSettings
from ingest.faces import FaceAnalyzer
from ingest.records import PhotoRecords
from ingest.sanitize import sanitize
from ingest.verdicts import Accepted, ReasonCode, SanitizeResult, rejected
from likeness import ids
from likeness.bus import event_subject
from likeness.keys import KeyDestroyed, VaultUnavailable
from likeness.objects import face_template_key, photo_key
from likeness.rpc_errors import abort
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.store import StoreError
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, events_pb2, ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[object, object]
PS = ingest_pb2.PhotoStatus


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, platform: Platform, records: PhotoRecords, settings: IngestSettings) -> None:
        self.platform = platform
        self.records = records
        self.limits = settings.limits()
        self.analyzer = FaceAnalyzer()
        self._slots = asyncio.Semaphore(settings.max_concurrent)

    async def SanitizePhoto(
        self, request_iterator: AsyncIterator[ingest_pb2.SanitizePhotoRequest], context: Context
    ) -> ingest_pb2.SanitizePhotoResponse:
        first = await anext(request_iterator, None)
        if first is None or not first.HasField("header"):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "missing_header",
                "The upload must start with a header.",
            )
        header = first.header
        if not ids.is_valid_tenant(header.tenant) or not ids.is_valid_id(header.subject_id, "sub"):
            await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "No such subject.")
        data, too_large = await self._receive(request_iterator)
        photo_id = ids.new_id("pho")
        async with self._slots:
            result: SanitizeResult
            if too_large:
                result = rejected(ReasonCode.FILE_TOO_LARGE, self.limits)
            else:
                result = await asyncio.to_thread(sanitize, data, self.limits, self.analyzer)
            del data  # the upload's bytes are not needed past this point
            photo = ingest_pb2.Photo(
                id=photo_id, tenant=header.tenant, subject_id=header.subject_id, created_at=now_timestamp()
            )
            if isinstance(result, Accepted):
                await self._store(photo, result, context)
                photo.status = PS.PHOTO_STATUS_ACCEPTED
                photo.width, photo.height = result.width, result.height
                photo.scores["face_score"] = round(result.face_score, 3)
                photo.scores["face_fraction"] = round(result.face_fraction, 3)
            else:
                photo.status = PS.PHOTO_STATUS_REJECTED
                photo.reasons.extend(
                    common_pb2.Reason(code=str(r.code), message=r.message) for r in result.reasons
                )
        await self.records.put(photo)
        await self._announce(photo)
        log.info(
            "photo sanitized",
            extra={"photo_id": photo.id, "accepted": photo.status == PS.PHOTO_STATUS_ACCEPTED},
        )
        return ingest_pb2.SanitizePhotoResponse(photo=photo)

    async def _receive(self, requests: AsyncIterator[ingest_pb2.SanitizePhotoRequest]) -> tuple[bytes, bool]:
        """Collects the file in memory (never on disk), stopping at the byte limit."""
        buffer = bytearray()
        async for message in requests:
            buffer += message.chunk
            if len(buffer) > self.limits.max_bytes:
                return b"", True
        return bytes(buffer), False

    async def _store(self, photo: ingest_pb2.Photo, accepted: Accepted, context: Context) -> None:
        crop = ObjectRef(
            photo.tenant, photo.subject_id, photo_key(photo.tenant, photo.subject_id, photo.id), "photo"
        )
        # The identity template is biometric data: stored only encrypted under the subject's key.
        template = ObjectRef(
            photo.tenant,
            photo.subject_id,
            face_template_key(photo.tenant, photo.subject_id, photo.id),
            "face",
        )
        embedding = array.array("f", accepted.embedding).tobytes()
        try:
            await asyncio.to_thread(self.platform.sealed.put, crop, accepted.png)
            await asyncio.to_thread(self.platform.sealed.put, template, embedding)
        except KeyDestroyed:
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "subject_erased",
                "This subject has been erased.",
            )
        except (VaultUnavailable, StoreError):
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "storage_unavailable",
                "Storage is unavailable; retry later.",
            )

    async def _announce(self, photo: ingest_pb2.Photo) -> None:
        if photo.status == PS.PHOTO_STATUS_ACCEPTED:
            name, event = (
                "photo.accepted",
                events_pb2.PhotoAccepted(
                    tenant=photo.tenant, subject_id=photo.subject_id, photo_id=photo.id, at=now_timestamp()
                ),
            )
            await self.platform.bus.publish(
                event_subject(photo.tenant, photo.subject_id, name), event, msg_id=photo.id
            )
            return
        rejected_event = events_pb2.PhotoRejected(
            tenant=photo.tenant,
            subject_id=photo.subject_id,
            photo_id=photo.id,
            reason_codes=[r.code for r in photo.reasons],
            at=now_timestamp(),
        )
        subject = event_subject(photo.tenant, photo.subject_id, "photo.rejected")
        await self.platform.bus.publish(subject, rejected_event, msg_id=photo.id)

    async def ListPhotos(
        self, request: ingest_pb2.ListPhotosRequest, context: Context
    ) -> ingest_pb2.ListPhotosResponse:
        if not ids.is_valid_tenant(request.tenant) or not ids.is_valid_id(request.subject_id, "sub"):
            return ingest_pb2.ListPhotosResponse()
        return ingest_pb2.ListPhotosResponse(
            photos=await self.records.list(request.tenant, request.subject_id)
        )
