"""IngestService: receives an upload as a stream, sanitizes it in memory, stores only encrypted derivatives.

For an accepted photo, two objects are stored, both sealed under the subject's key: the training crop
and its face template (embedding and perceptual hash). Before they are, the photo is checked against
the subject's accepted photos (limit, duplicate, same person): that needs the subject's templates in
clear, so ingest decrypts them (one batched Vault call), under a per-subject lock.

Several replicas: the lock is per process. Two uploads of one subject handled at the same moment by two
replicas can each pass the checks without seeing the other (both copies of one picture accepted, or one
photo over the limit); nothing is lost or corrupted, since every object is written once. The gateway
sends the files of one request over one channel, which keeps them on one replica in practice.

Every method runs with the caller's verified token (`ingest.method_rules`) and checks its request against
it: the tenant must be the token's, and an end user's token may touch only its own subject.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc
import nats.errors

from ingest.config import IngestSettings
from ingest.decode import Decoder
from ingest.deletion import forget_photo, mark_photo, marked_photo
from ingest.export import exported_photos, exported_templates
from ingest.faces import FaceAnalyzer
from ingest.limits import SanitizeLimits, SubjectRules
from ingest.method_rules import TOKEN_RULES
from ingest.records import PhotoRecords
from ingest.sandbox.pool import DecoderUnavailable
from ingest.sanitize import sanitize
from ingest.subject_checks import subject_problem
from ingest.subject_locks import SubjectLocks
from ingest.templates import FaceTemplate, SubjectTemplates
from ingest.verdicts import Accepted, Reason, ReasonCode, Rejected, SanitizeResult, rejected
from likeness import ids
from likeness.audit import AuditTrail
from likeness.bus import event_nats_subject
from likeness.item_deletion import NOT_A_CRYPTO_ERASE, ItemNotFound, NotMarked, audited, deletion_once_key
from likeness.method_access import current_principal, require_subject
from likeness.object_names import photo_key
from likeness.record_pages import InvalidPage, page_size
from likeness.rpc_errors import abort
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.storage_full import STORAGE_FULL, STORAGE_FULL_MESSAGE, is_storage_full
from likeness.store import StoreError
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, events_pb2, ingest_pb2, ingest_pb2_grpc
from likeness.vault_transit import KeyAccessDenied, KeyDestroyed, KeyError_

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[object, object]
Sanitizer = Callable[[bytes, SanitizeLimits, FaceAnalyzer, Decoder], SanitizeResult]
PS = ingest_pb2.PhotoStatus
#: An upload whose stream ends less than this before its caller's deadline was cut by the deadline.
CUT_BY_DEADLINE_SECONDS = 0.25


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    #: What each method asks of the caller's token (enforced by the server's interceptor).
    token_rules = TOKEN_RULES

    def __init__(
        self,
        platform: Platform,
        records: PhotoRecords,
        settings: IngestSettings,
        decoder: Decoder,
        analyzer: FaceAnalyzer | None = None,
        sanitizer: Sanitizer = sanitize,
    ) -> None:
        """``decoder``: what parses the uploads, the decoding sandbox's started pool (`ingest.decoding`);
        ``analyzer``: share one (its models are loaded once); ``sanitizer``: the per-photo pipeline,
        replaceable so bench/ingest.py can run a naive one through the same service."""
        self.platform = platform
        self.records = records
        self.audit = AuditTrail(platform.bus, settings.audit_pseudonym_secret.get_secret_value(), "ingest")
        self.limits = settings.limits()
        self.rules: SubjectRules = settings.subject_rules()
        self.analyzer = analyzer or FaceAnalyzer()
        self.sanitizer = sanitizer
        self.decoder = decoder
        self.templates = SubjectTemplates(platform.sealed, platform.store)
        self.subject_locks = SubjectLocks()
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._uploads = asyncio.Semaphore(settings.max_concurrent_uploads)
        self._receive_seconds = settings.upload_receive_seconds

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
        # The header arrives in the stream: checked here, before a byte of the file is read.
        await require_subject(context, header.tenant, header.subject_id)
        if not ids.is_valid_tenant(header.tenant) or not ids.is_valid_id(header.subject_id, "sub"):
            await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "No such subject.")
        tenant, subject_id = header.tenant, header.subject_id

        async with self._uploads:
            # A full subject is refused before a byte of the file is read or a CPU second spent on it.
            async with storage_errors(context):
                accepted_ids = await asyncio.to_thread(self.templates.photo_ids, tenant, subject_id)
            if len(accepted_ids) >= self.rules.max_photos:
                reason = Reason.of(ReasonCode.TOO_MANY_PHOTOS, self.limits, self.rules)
                await abort(context, grpc.StatusCode.FAILED_PRECONDITION, reason.code, reason.message)

            data, too_large = await self._receive(request_iterator, context)
            photo = ingest_pb2.Photo(
                id=ids.new_id("pho"), tenant=tenant, subject_id=subject_id, created_at=now_timestamp()
            )
            result: SanitizeResult
            async with self._slots:
                if too_large:
                    result = rejected(ReasonCode.FILE_TOO_LARGE, self.limits)
                else:
                    result = await self._sanitize(data, context)
            del data  # the upload's bytes are not needed past this point

            if isinstance(result, Accepted):
                async with self.subject_locks.hold(tenant, subject_id):
                    verdict = await self._admit(photo, result, context)
                    await self._record(photo, verdict, context)
                if photo.status == PS.PHOTO_STATUS_ACCEPTED:
                    await self.audit.record(
                        tenant,
                        "photo.stored",
                        subject_id,
                        "ok",
                        photo.id,
                        principal=self.audit.principal(current_principal()),
                    )
            else:
                await self._record(photo, result, context)

        await self._announce(photo)
        log.info(
            "photo sanitized",
            extra={
                "photo_id": photo.id,
                "accepted": photo.status == PS.PHOTO_STATUS_ACCEPTED,
                "reasons": [r.code for r in photo.reasons],
            },
        )
        return ingest_pb2.SanitizePhotoResponse(photo=photo)

    async def _receive(
        self, requests: AsyncIterator[ingest_pb2.SanitizePhotoRequest], context: Context
    ) -> tuple[bytes, bool]:
        """Collects the file in memory (never on disk), stopping as soon as it passes the byte limit.

        At most the limit plus one message (8 MiB at most, the server's message limit) is ever held. The
        file must arrive within `upload_receive_seconds` of its slot being taken, or by the caller's gRPC
        deadline if that is sooner: then the call ends with DEADLINE_EXCEEDED (`upload_timeout`) and its
        upload slot is free, so no caller (a slow or compromised gateway, one sending no deadline) holds
        a slot longer.
        """
        seconds = self._receive_seconds
        remaining = context.time_remaining()
        if remaining is not None:
            seconds = min(seconds, remaining)
        buffer = bytearray()
        try:
            async with asyncio.timeout(seconds):
                async for message in requests:
                    buffer += message.chunk
                    if len(buffer) > self.limits.max_bytes:
                        return b"", True
                # gRPC ends a request stream at its deadline as if the caller had closed it, before it
                # cancels this handler: a stream ending that late was cut, not finished.
                left = context.time_remaining()
                if left is not None and left < CUT_BY_DEADLINE_SECONDS:
                    raise TimeoutError
        except TimeoutError:
            buffer.clear()  # not kept while the refusal goes out
            await abort(
                context,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "upload_timeout",
                f"The photo was not received within {seconds:.3g} s.",
            )
        return bytes(buffer), False

    async def _sanitize(self, data: bytes, context: Context) -> SanitizeResult:
        """The photo's verdict; its bytes are parsed only by the decoder (the sandbox), never here. A
        decoder that crashes or hangs on it makes it `corrupt_image`; no worker at all is UNAVAILABLE."""
        try:
            return await asyncio.to_thread(self.sanitizer, data, self.limits, self.analyzer, self.decoder)
        except DecoderUnavailable:
            log.error("no decoding worker could be had")
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "decoder_unavailable",
                "Photos cannot be checked right now; retry later.",
            )

    async def _admit(self, photo: ingest_pb2.Photo, accepted: Accepted, context: Context) -> SanitizeResult:
        """Checks the photo against the subject's accepted ones and, if it passes, stores it.

        Called with the subject's lock held. Returns the final verdict: ``accepted`` itself, or why the
        subject cannot take it.
        """
        async with storage_errors(context):
            stored = await asyncio.to_thread(self.templates.load, photo.tenant, photo.subject_id)
        problem = subject_problem(
            accepted.embedding, accepted.perceptual_hash, list(stored.values()), self.rules
        )
        del stored  # other photos' templates: not needed past the check
        if problem is not None:
            return Rejected(reasons=[Reason.of(problem, self.limits, self.rules)], scores=accepted.scores)
        await self._store(photo, accepted, context)
        return accepted

    async def _store(self, photo: ingest_pb2.Photo, accepted: Accepted, context: Context) -> None:
        crop = ObjectRef(
            photo.tenant, photo.subject_id, photo_key(photo.tenant, photo.subject_id, photo.id), "photo"
        )
        # The template is biometric data: stored only encrypted under the subject's key.
        template = FaceTemplate(embedding=accepted.embedding, perceptual_hash=accepted.perceptual_hash.value)
        async with storage_errors(context):
            # One after the other: the S3 and Vault clients keep one connection each (written in parallel,
            # the second would open and throw away a connection of its own every time).
            await asyncio.to_thread(self.platform.sealed.put, crop, accepted.png)
            try:
                await asyncio.to_thread(
                    self.templates.save, photo.tenant, photo.subject_id, photo.id, template
                )
            except BaseException:
                await self._discard(photo)
                raise

    async def _record(self, photo: ingest_pb2.Photo, result: SanitizeResult, context: Context) -> None:
        """Fills in the verdict and writes the record; an accepted photo whose record cannot be written
        is removed again, so no photo is stored that no listing shows."""
        photo.scores.update(result.scores)
        if isinstance(result, Accepted):
            photo.status = PS.PHOTO_STATUS_ACCEPTED
            photo.width, photo.height = result.width, result.height
        else:
            photo.status = PS.PHOTO_STATUS_REJECTED
            photo.reasons.extend(
                common_pb2.Reason(code=str(r.code), message=r.message) for r in result.reasons
            )
        try:
            await self.records.add_verdict(photo)
        except (nats.errors.Error, TimeoutError) as error:
            if isinstance(result, Accepted):
                await self._discard(photo)
            if is_storage_full(error):  # the photos bucket is at its bound (DiscardNew): say so
                await abort(context, grpc.StatusCode.UNAVAILABLE, STORAGE_FULL, STORAGE_FULL_MESSAGE)
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "records_unavailable",
                "Records are unavailable; retry later.",
            )

    async def _discard(self, photo: ingest_pb2.Photo) -> None:
        """Best effort: a failure here leaves an orphan that the subject's erasure still removes."""
        try:
            await asyncio.to_thread(self.templates.discard, photo.tenant, photo.subject_id, photo.id)
            await asyncio.to_thread(
                self.platform.store.delete_all_versions, photo_key(photo.tenant, photo.subject_id, photo.id)
            )
        except StoreError:
            log.warning("could not remove an unrecorded photo", extra={"photo_id": photo.id})

    async def _announce(self, photo: ingest_pb2.Photo) -> None:
        if photo.status == PS.PHOTO_STATUS_ACCEPTED:
            name, event = (
                "photo.accepted",
                events_pb2.PhotoAccepted(
                    tenant=photo.tenant, subject_id=photo.subject_id, photo_id=photo.id, at=now_timestamp()
                ),
            )
            await self.platform.bus.publish(
                event_nats_subject(photo.tenant, photo.subject_id, name), event, msg_id=photo.id
            )
            return
        rejected_event = events_pb2.PhotoRejected(
            tenant=photo.tenant,
            subject_id=photo.subject_id,
            photo_id=photo.id,
            reason_codes=[r.code for r in photo.reasons],
            at=now_timestamp(),
        )
        subject = event_nats_subject(photo.tenant, photo.subject_id, "photo.rejected")
        await self.platform.bus.publish(subject, rejected_event, msg_id=photo.id)

    async def ListPhotos(
        self, request: ingest_pb2.ListPhotosRequest, context: Context
    ) -> ingest_pb2.ListPhotosResponse:
        await require_subject(context, request.tenant, request.subject_id)
        try:
            size = page_size(request.page_size)
        except InvalidPage as invalid:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, invalid.code, str(invalid))
        if request.page_token and not ids.is_valid_id(request.page_token, "pho"):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_page_token",
                "The page token is not valid.",
            )
        if not ids.is_valid_tenant(request.tenant) or not ids.is_valid_id(request.subject_id, "sub"):
            return ingest_pb2.ListPhotosResponse()
        page = await self.records.page(request.tenant, request.subject_id, size, request.page_token)
        return ingest_pb2.ListPhotosResponse(photos=page.records, next_page_token=page.next_page_token)

    async def ExportPhotos(
        self, request: ingest_pb2.ExportPhotosRequest, context: Context
    ) -> AsyncIterator[ingest_pb2.ExportPhotosResponse]:
        """The subject's stored crops, decrypted, for their data export (see `ingest.export`)."""
        await require_subject(context, request.tenant, request.subject_id)
        if not ids.is_valid_tenant(request.tenant) or not ids.is_valid_id(request.subject_id, "sub"):
            await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "No such subject.")
        photos = await self.records.list(request.tenant, request.subject_id)
        if any(photo.status == PS.PHOTO_STATUS_ACCEPTED for photo in photos):
            # Recorded before a crop is decrypted: a full audit trail refuses the export instead.
            await self.audit.record(
                request.tenant,
                "photos.exported",
                request.subject_id,
                "ok",
                principal=self.audit.principal(current_principal()),
                purpose="export",
            )
        async with storage_errors(context):
            async for part in exported_photos(
                self.platform.sealed, request.tenant, request.subject_id, photos
            ):
                yield part

    async def ExportFaceTemplates(
        self, request: ingest_pb2.ExportFaceTemplatesRequest, context: Context
    ) -> ingest_pb2.ExportFaceTemplatesResponse:
        """The subject's face templates, decrypted, for their data export (see `ingest.export`)."""
        await require_subject(context, request.tenant, request.subject_id)
        if not ids.is_valid_tenant(request.tenant) or not ids.is_valid_id(request.subject_id, "sub"):
            await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "No such subject.")
        async with storage_errors(context):
            found = await asyncio.to_thread(
                exported_templates, self.templates, request.tenant, request.subject_id
            )
        if found:
            # Recorded before the templates leave this service: a full audit trail refuses the export.
            await self.audit.record(
                request.tenant,
                "templates.exported",
                request.subject_id,
                "ok",
                principal=self.audit.principal(current_principal()),
                purpose="export",
            )
        return ingest_pb2.ExportFaceTemplatesResponse(templates=found)

    async def DeletePhoto(
        self, request: ingest_pb2.DeletePhotoRequest, context: Context
    ) -> ingest_pb2.DeletePhotoResponse:
        """Per-item deletion (`ingest.deletion`): marks the record; with `purged`, forgets it and audits."""
        principal = await require_subject(context, request.tenant, request.subject_id)
        try:
            if not (
                ids.is_valid_tenant(request.tenant)
                and ids.is_valid_id(request.subject_id, "sub")
                and ids.is_valid_id(request.photo_id, "pho")
            ):
                raise ItemNotFound(request.photo_id)
            if not request.purged:
                photo = await mark_photo(self.records, request.tenant, request.subject_id, request.photo_id)
                return ingest_pb2.DeletePhotoResponse(photo=photo)
            photo = await marked_photo(self.records, request.tenant, request.subject_id, request.photo_id)
        except ItemNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "photo_not_found", "No such photo.")
        except NotMarked:
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "deletion_not_started",
                "Delete the photo first.",
            )
        # Audited before the record goes (a full trail refuses, and the retry finds the record still there).
        await audited(
            context,
            self.audit.record(
                request.tenant,
                "photo.deleted",
                request.subject_id,
                "ok",
                request.photo_id,
                principal=self.audit.principal(principal),
                purpose="deletion",
                notice=NOT_A_CRYPTO_ERASE,
                once_key=deletion_once_key(request.photo_id),
            ),
        )
        await forget_photo(self.records, request.tenant, request.subject_id, request.photo_id)
        return ingest_pb2.DeletePhotoResponse(photo=photo)


@asynccontextmanager
async def storage_errors(context: Context) -> AsyncIterator[None]:
    """Turns S3 and Vault failures inside it into the gRPC status the caller can act on."""
    try:
        yield
    except KeyDestroyed:
        await abort(
            context, grpc.StatusCode.FAILED_PRECONDITION, "subject_erased", "This subject has been erased."
        )
    except KeyAccessDenied:
        # A deployment error, not the caller's: ingest's Vault policy must allow data keys AND decrypt of
        # subject keys (the duplicate and same-person checks read the subject's templates).
        log.error("Vault denied ingest a transit operation; check its policy")
        await abort(context, grpc.StatusCode.INTERNAL, "internal", "Something went wrong on our side.")
    except (KeyError_, StoreError):
        await abort(
            context,
            grpc.StatusCode.UNAVAILABLE,
            "storage_unavailable",
            "Storage is unavailable; retry later.",
        )
