"""Data export (GDPR access and portability): one zip of everything held about a subject, streamed.

The gateway holds no Vault rights, so every byte comes decrypted from the service that owns it: crops and
face templates from ingest (`ExportPhotos`, `ExportFaceTemplates`), the LoRA of each trained model with the
templates sealed beside it from the trainer (`ExportModels`), rendered images from the renderer
(`FetchImage`, as for a download), the consent history and every item's deletion date from retention
(`ListConsents`, `DescribeHoldings`: the same holdings the summary shows). The records are gathered before
the response starts, so a missing subject or a backend that is down still
gets a proper error; after that the archive is written entry by entry as the bytes arrive (one photo or
one image in memory at a time, never a temporary file), and a failure cuts the stream before the zip's
central directory, so a half export is never a readable archive.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Security
from fastapi.responses import StreamingResponse

from gateway import access, consent_schemas, convert, holdings_schemas
from gateway.auth import Principal
from gateway.backends import Backends as BackendClients
from gateway.contract import answers, header
from gateway.deps import Backends, authenticate
from gateway.errors import subject_erased
from gateway.export_zip import ZipStream
from gateway.paging import every_page
from gateway.photo_listing import every_photo
from likeness.rpc_errors import error_code
from likeness.v1 import common_pb2, ingest_pb2, renderer_pb2, retention_pb2, trainer_pb2

log = logging.getLogger(__name__)
router = APIRouter(tags=["subjects"])

SubjectsExport = Annotated[Principal, Security(authenticate, scopes=["subjects:export"])]

#: File name suffixes of the image types the services store.
SUFFIXES = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
PAGE_SIZE = 100
#: Values per face embedding (`likeness_ml.face_templates.EMBEDDING_SIZE`; the gateway does not depend on
#: the ML library).
EMBEDDING_SIZE = 128

README = """\
Likeness: data export
=====================

This archive holds everything Likeness keeps about one person (a "subject"), as of {exported_at}.
Every file in it was decrypted for this export by the service that owns it; inside Likeness all of it
is stored only encrypted, under a key of this person alone.

subject.json    The subject's record: its id, status, when it was opened, the consent given (purpose,
                policy version, when) and the retention schedule (how long photos, models and renders
                are kept) with the date by which everything is deleted at the latest. A reference the
                tenant may have attached ("external_ref") is stored only as a keyed hash and cannot be
                given back.
summary.json    Everything held as the export began, per category (photos, face templates, models,
                renders, images, consents, the processing log), with counts, bytes and each item's
                deletion date ("delete_by") and the rule that sets it ("deletion_rule"): the retention
                schedule (photos_days, photos_deleted_after_training, models_days, renders_days), the
                subject's own deadline (hard_cap, inactivity), or, for the processing log, how long
                audit records are kept (audit_retention). The same dates are on each item below.
consents.json   The consent history: every grant (purpose, policy version, who granted, when, until
                when), withdrawn and expired ones included.
photos.json     Every uploaded photo's verdict: accepted or rejected, the reasons, the size of the
                stored crop and the quality scores. "file" names the photo's crop in photos/, or is
                null when no crop is held (a rejected photo is never stored; an accepted one is
                deleted after training or on its retention deadline).
photos/         The stored crops, as Likeness holds them: the face, aligned and cropped, re-encoded as a
                PNG with no metadata. The original uploads are never stored.
face_templates.json
                Biometric data: the face templates (128 numbers each, a face's identity embedding)
                computed from each photo still held, with the photo's perceptual hash; and the set
                sealed beside each trained model (the embeddings of the photos it learned from, used
                to check that a headshot still shows the person).
trainings.json  The trainings of the person's model: status, progress, errors and the photos each
                learned from. "model.file" names the model in models/, or is null when it is no
                longer held.
models/         Each trained model's LoRA weights, as Likeness holds them (safetensors: readable with the
                `safetensors` library; meaningful together with the base model it was trained on).
renders.json    The renders (headshots) made: styles, seeds, status. "file" of each image names it in
                renders/, or is null when it is no longer held (deleted on its retention deadline).
renders/        The rendered images, as delivered: each is marked as AI-generated (IPTC
                DigitalSourceType, an invisible watermark, a signed C2PA manifest).
processing_log.json
                Every access to this person's data, oldest first, up to this export: what was done
                (e.g. "photos.decrypted"), when, by whom ("subject": the person's own token; "tenant":
                the service's back end; "service:<name>": Likeness's own background work), for which
                purpose and with what outcome. Status reads are not accesses and are not listed.

To have everything erased, ask the service you used to delete your data: the person's key is destroyed
first, then every object and record.
"""


@dataclass
class _Held:
    """The records of one subject, read before the first byte of the archive is sent."""

    subject: retention_pb2.Subject
    photos: list[ingest_pb2.Photo]
    trainings: list[trainer_pb2.Training]
    renders: list[renderer_pb2.Render]
    consents: list[retention_pb2.ConsentGrant]
    holdings: retention_pb2.DescribeHoldingsResponse
    templates: list[common_pb2.FaceEmbedding]

    def deletion(self, category: str, item_id: str) -> dict[str, Any]:
        """`delete_by` and `deletion_rule` of one held item (both null when it is not held any more)."""
        for held in self.holdings.categories:
            if held.name == category:
                for item in held.items:
                    if item.id == item_id:
                        found = holdings_schemas.item(item)
                        return found.model_dump(mode="json", include={"delete_by", "deletion_rule"})
        return {"delete_by": None, "deletion_rule": None}


class ExportAborted(Exception):
    """A backend failed after the archive began: the response is cut, never completed."""


@router.get(
    "/v1/subjects/{subject_id}/export",
    summary="Export everything held about a subject as a zip (GDPR access and portability)",
    description="A zip streamed as it is built: `README.txt`, `subject.json`, `summary.json` (every category "
    "held, each item with its deletion date), `consents.json`, `photos.json` and `photos/`, "
    "`face_templates.json`, `trainings.json` and `models/` (LoRA weights, safetensors), `renders.json` and "
    "`renders/`, `processing_log.json` (every access to the person's data). An end-user token may export "
    "its own subject. "
    "If something fails once the download has begun, the connection is cut before the archive is "
    "complete, so an incomplete export never opens as a valid zip.",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The archive",
            "headers": header("Attachment"),
        },
        **answers("not_found", "subject_erased"),
    },
)
async def export_subject(subject_id: str, principal: SubjectsExport, backends: Backends) -> StreamingResponse:
    subject = await access.live_subject(backends, principal, subject_id)
    held = await _gather(backends, principal.tenant, subject)
    request = ingest_pb2.ExportPhotosRequest(tenant=principal.tenant, subject_id=subject_id)
    call = backends.ingest.ExportPhotos(request, timeout=backends.stream_timeout)
    messages = call.__aiter__()
    # The first message is awaited before answering, so ingest failing at once is still a proper error.
    try:
        first = await anext(messages, None)
    except grpc.aio.AioRpcError as exc:
        call.cancel()
        if error_code(exc) == "subject_erased":
            raise subject_erased() from None  # erased since the check above
        raise
    return StreamingResponse(
        _archive(backends, principal.tenant, held, call, first, messages),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="likeness-export-{subject_id}.zip"'},
    )


async def _gather(backends: BackendClients, tenant: str, subject: retention_pb2.Subject) -> _Held:
    photos = await every_photo(backends, tenant, subject.id)

    async def training_page(token: str) -> tuple[list[trainer_pb2.Training], str]:
        request = trainer_pb2.ListTrainingsRequest(
            tenant=tenant, subject_id=subject.id, page_size=PAGE_SIZE, page_token=token
        )
        page = await backends.trainer.ListTrainings(request, timeout=backends.timeout)
        return list(page.trainings), page.next_page_token

    async def render_page(token: str) -> tuple[list[renderer_pb2.Render], str]:
        request = renderer_pb2.ListRendersRequest(
            tenant=tenant, subject_id=subject.id, page_size=PAGE_SIZE, page_token=token
        )
        page = await backends.renderer.ListRenders(request, timeout=backends.timeout)
        return list(page.renders), page.next_page_token

    trainings = await every_page(training_page)
    renders = await every_page(render_page)
    consents = await backends.retention.ListConsents(
        retention_pb2.ListConsentsRequest(tenant=tenant, subject_id=subject.id), timeout=backends.timeout
    )
    holdings = await backends.retention.DescribeHoldings(
        retention_pb2.DescribeHoldingsRequest(tenant=tenant, subject_id=subject.id), timeout=backends.timeout
    )
    templates = await backends.ingest.ExportFaceTemplates(
        ingest_pb2.ExportFaceTemplatesRequest(tenant=tenant, subject_id=subject.id), timeout=backends.timeout
    )
    return _Held(
        subject=subject,
        photos=photos,
        trainings=sorted(trainings, key=lambda t: t.id),
        renders=sorted(renders, key=lambda r: r.id),
        consents=list(consents.grants),
        holdings=holdings,
        templates=list(templates.templates),
    )


async def _archive(
    backends: BackendClients,
    tenant: str,
    held: _Held,
    call: grpc.aio.UnaryStreamCall[ingest_pb2.ExportPhotosRequest, ingest_pb2.ExportPhotosResponse],
    first: ingest_pb2.ExportPhotosResponse | None,
    messages: AsyncIterator[ingest_pb2.ExportPhotosResponse],
) -> AsyncIterator[bytes]:
    archive = ZipStream()
    try:
        yield archive.add("README.txt", README.format(exported_at=_now()).encode())
        yield archive.add_json("subject.json", _subject_document(held.subject))
        now = datetime.now(UTC)
        yield archive.add_json(
            "summary.json", holdings_schemas.summary(held.holdings, now).model_dump(mode="json")
        )
        yield archive.add_json(
            "consents.json",
            {"grants": [consent_schemas.grant(g, now).model_dump(mode="json") for g in held.consents]},
        )

        photo_files: dict[str, str] = {}
        async for piece in _photo_entries(archive, first, messages, photo_files):
            if piece:
                yield piece
        yield archive.add_json("photos.json", {"photos": _photos_document(held, photo_files)})

        models: dict[str, trainer_pb2.ExportedModel] = {}
        async for piece in _model_entries(archive, backends, tenant, held.subject.id, models):
            if piece:
                yield piece
        yield archive.add_json("face_templates.json", _templates_document(held, models))
        yield archive.add_json(
            "trainings.json", {"trainings": [_training_document(held, t, models) for t in held.trainings]}
        )

        image_files: dict[str, str] = {}
        for render in held.renders:
            for image in render.images:
                async for piece in _image_entry(archive, backends, tenant, render.id, image.id, image_files):
                    if piece:
                        yield piece
        yield archive.add_json("renders.json", {"renders": _renders_document(held, image_files)})

        # Last, so the log holds this export's own records (the crops, models and images it decrypted).
        yield archive.add_json(
            "processing_log.json", await _processing_log(backends, tenant, held.subject.id)
        )
        # An erasure that began during the export must not end in a complete archive of a missing person.
        await _still_live(backends, tenant, held.subject.id)
        yield archive.finish()
        log.info("subject exported", extra={"entries": len(archive.names)})
    except grpc.aio.AioRpcError as exc:
        log.warning("export cut short: a backend failed", extra={"grpc_status": exc.code().name})
        raise ExportAborted("a backend failed during the export") from None
    finally:
        call.cancel()  # the client went away early, or the stream is done (then this is a no-op)
        archive.discard()  # a no-op once finished


async def _photo_entries(
    archive: ZipStream,
    first: ingest_pb2.ExportPhotosResponse | None,
    messages: AsyncIterator[ingest_pb2.ExportPhotosResponse],
    files: dict[str, str],
) -> AsyncIterator[bytes]:
    """One entry per crop ingest streams: each header opens `photos/<id>.<ext>`, its chunks fill it."""
    open_entry = False

    async def parts() -> AsyncIterator[ingest_pb2.ExportPhotosResponse]:
        if first is None:
            return
        yield first
        async for message in messages:
            yield message

    async for message in parts():
        if message.WhichOneof("part") == "photo":
            if open_entry:
                yield archive.end()
            name = f"photos/{message.photo.photo_id}.{SUFFIXES.get(message.photo.content_type, 'bin')}"
            files[message.photo.photo_id] = name
            yield archive.begin(name)
            open_entry = True
        elif open_entry:
            yield archive.write(message.chunk)
    if open_entry:
        yield archive.end()


async def _model_entries(
    archive: ZipStream,
    backends: BackendClients,
    tenant: str,
    subject_id: str,
    models: dict[str, trainer_pb2.ExportedModel],
) -> AsyncIterator[bytes]:
    """`models/<training>.safetensors`, one per model the trainer streams (each header opens an entry, its
    chunks fill it); each header, with the templates sealed beside the model, is kept in `models`."""
    request = trainer_pb2.ExportModelsRequest(tenant=tenant, subject_id=subject_id)
    call = backends.trainer.ExportModels(request, timeout=backends.stream_timeout)
    open_entry = False
    try:
        async for message in call:
            if message.WhichOneof("part") == "model":
                if open_entry:
                    yield archive.end()
                models[message.model.training_id] = message.model
                yield archive.begin(f"models/{message.model.training_id}.safetensors")
                open_entry = True
            elif open_entry:
                yield archive.write(message.chunk)
        if open_entry:
            yield archive.end()
    finally:
        call.cancel()


async def _image_entry(
    archive: ZipStream,
    backends: BackendClients,
    tenant: str,
    render_id: str,
    image_id: str,
    files: dict[str, str],
) -> AsyncIterator[bytes]:
    """`renders/<render>/<image>.<ext>`, streamed from the renderer; an image no longer held is skipped."""
    request = renderer_pb2.FetchImageRequest(
        tenant=tenant, render_id=render_id, image_id=image_id, for_export=True
    )
    call = backends.renderer.FetchImage(request, timeout=backends.stream_timeout)
    try:
        messages = call.__aiter__()
        try:
            first = await anext(messages, None)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return  # deleted on its retention deadline (an erasure is caught at the end)
            raise
        if first is None or first.WhichOneof("part") != "info":
            raise ExportAborted("the renderer sent an image without its info")
        name = f"renders/{render_id}/{image_id}.{SUFFIXES.get(first.info.content_type, 'bin')}"
        yield archive.begin(name)
        async for message in messages:
            if message.WhichOneof("part") == "chunk":
                yield archive.write(message.chunk)
        yield archive.end()
        files[image_id] = name
    finally:
        call.cancel()


async def _processing_log(backends: BackendClients, tenant: str, subject_id: str) -> dict[str, Any]:
    """The person's whole processing log (`ListProcessingLog`, every page), oldest first."""

    async def log_page(token: str) -> tuple[list[retention_pb2.AuditEntry], str]:
        request = retention_pb2.ListProcessingLogRequest(
            tenant=tenant, subject_id=subject_id, page_size=PAGE_SIZE, page_token=token, for_export=True
        )
        page = await backends.retention.ListProcessingLog(request, timeout=backends.timeout)
        return list(page.entries), page.next_page_token

    entries = await every_page(log_page)
    return {"entries": [convert.audit_entry(entry).model_dump(mode="json") for entry in entries]}


async def _still_live(backends: BackendClients, tenant: str, subject_id: str) -> None:
    request = retention_pb2.GetSubjectRequest(tenant=tenant, subject_id=subject_id)
    subject = (await backends.retention.GetSubject(request, timeout=backends.timeout)).subject
    if subject.status in (retention_pb2.SUBJECT_STATUS_ERASING, retention_pb2.SUBJECT_STATUS_ERASED):
        raise ExportAborted("the subject is being erased")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _subject_document(subject: retention_pb2.Subject) -> dict[str, Any]:
    return {"exported_at": _now(), "subject": convert.subject(subject).model_dump(mode="json")}


def _photos_document(held: _Held, files: dict[str, str]) -> list[dict[str, Any]]:
    return [
        convert.photo(photo).model_dump(mode="json")
        | {"file": files.get(photo.id)}
        | held.deletion("photos", photo.id)
        for photo in held.photos
    ]


def _templates_document(held: _Held, models: dict[str, trainer_pb2.ExportedModel]) -> dict[str, Any]:
    """Both kinds of face template as numbers (`likeness_ml.face_templates.embeddings_from_json` reads an
    embedding list back); each with its deletion date."""
    return {
        "embedding_size": EMBEDDING_SIZE,
        "photos": [
            {
                "photo_id": template.photo_id,
                "embedding": list(template.values),
                "perceptual_hash": template.perceptual_hash or None,
            }
            | held.deletion("face_templates", template.photo_id)
            for template in held.templates
        ],
        "models": [
            {
                "training_id": training_id,
                "embeddings": [list(template.values) for template in model.face_templates],
            }
            | held.deletion("face_templates", training_id)
            for training_id, model in sorted(models.items())
        ],
    }


def _training_document(
    held: _Held, training: trainer_pb2.Training, models: dict[str, trainer_pb2.ExportedModel]
) -> dict[str, Any]:
    document = convert.training(training).model_dump(mode="json")
    document["photo_ids"] = list(training.photo_ids)
    exported = models.get(training.id)
    document["model"] = {
        "kind": "LoRA weights",
        "format": "safetensors",
        "file": f"models/{training.id}.safetensors" if exported is not None else None,
        "bytes": exported.size if exported is not None else None,
    } | held.deletion("models", training.id)
    return document


def _renders_document(held: _Held, files: dict[str, str]) -> list[dict[str, Any]]:
    documents = []
    for render in held.renders:
        document = convert.render(render).model_dump(mode="json") | held.deletion("renders", render.id)
        for image in document["images"]:
            image["file"] = files.get(image["id"])
            image.update(held.deletion("images", image["id"]))
        documents.append(document)
    return documents
