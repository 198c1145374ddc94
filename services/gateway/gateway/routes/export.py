"""Data export (GDPR access and portability): one zip of everything held about a subject, streamed.

The gateway holds no Vault rights, so every byte comes decrypted from the service that owns it: crops
from ingest (`ExportPhotos`), rendered images from the renderer (`FetchImage`, as for a download). The
records are gathered before the response starts, so a missing subject or a backend that is down still
gets a proper error; after that the archive is written entry by entry as the bytes arrive (one photo or
one image in memory at a time, never a temporary file), and a failure cuts the stream before the zip's
central directory, so a half export is never a readable archive.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import grpc
from fastapi import APIRouter, Security
from fastapi.responses import StreamingResponse

from gateway import access, convert
from gateway.auth import Principal
from gateway.backends import Backends as BackendClients
from gateway.contract import answers, header
from gateway.deps import Backends, authenticate
from gateway.errors import subject_erased
from gateway.export_zip import ZipStream
from likeness.rpc_errors import error_code
from likeness.v1 import ingest_pb2, renderer_pb2, retention_pb2, trainer_pb2

T = TypeVar("T")

log = logging.getLogger(__name__)
router = APIRouter(tags=["subjects"])

SubjectsExport = Annotated[Principal, Security(authenticate, scopes=["subjects:export"])]

#: File name suffixes of the image types the services store.
SUFFIXES = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
PAGE_SIZE = 100

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
photos.json     Every uploaded photo's verdict: accepted or rejected, the reasons, the size of the
                stored crop and the quality scores. "file" names the photo's crop in photos/, or is
                null when no crop is held (a rejected photo is never stored; an accepted one is
                deleted after training or on its retention deadline).
photos/         The stored crops, as Likeness holds them: the face, aligned and cropped, re-encoded as a
                PNG with no metadata. The original uploads are never stored.
trainings.json  The trainings of the person's model: status, progress, errors and the photos each
                learned from. The model itself (LoRA weights) is not included: it is data derived from
                the photos, meaningful only to this software together with its base model, and no
                service offers it for export. It is deleted with the person, or on its deadline.
renders.json    The renders (headshots) made: styles, seeds, status. "file" of each image names it in
                renders/, or is null when it is no longer held (deleted on its retention deadline).
renders/        The rendered images, as delivered: each is marked as AI-generated (IPTC
                DigitalSourceType, an invisible watermark, a signed C2PA manifest).

Face templates (the biometric numbers ingest computes to tell duplicates and other people apart) are
used only inside Likeness and are not part of this export. To have everything erased, ask the service
you used to delete your data: the person's key is destroyed first, then every object and record.
"""


@dataclass
class _Held:
    """The records of one subject, read before the first byte of the archive is sent."""

    subject: retention_pb2.Subject
    photos: list[ingest_pb2.Photo]
    trainings: list[trainer_pb2.Training]
    renders: list[renderer_pb2.Render]


class ExportAborted(Exception):
    """A backend failed after the archive began: the response is cut, never completed."""


@router.get(
    "/v1/subjects/{subject_id}/export",
    summary="Export everything held about a subject as a zip (GDPR access and portability)",
    description="A zip streamed as it is built: `README.txt`, `subject.json`, `photos.json` and `photos/`, "
    "`trainings.json`, `renders.json` and `renders/`. An end-user token may export its own subject. "
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


async def _every_page(fetch: Callable[[str], Awaitable[tuple[list[T], str]]]) -> list[T]:
    """Every item of a paged backend list, following its page tokens to the end."""
    items: list[T] = []
    token = ""
    while True:
        page, token = await fetch(token)
        items.extend(page)
        if not token:
            return items


async def _gather(backends: BackendClients, tenant: str, subject: retention_pb2.Subject) -> _Held:
    photos = await backends.ingest.ListPhotos(
        ingest_pb2.ListPhotosRequest(tenant=tenant, subject_id=subject.id), timeout=backends.timeout
    )

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

    trainings = await _every_page(training_page)
    renders = await _every_page(render_page)
    return _Held(
        subject=subject,
        photos=list(photos.photos),
        trainings=sorted(trainings, key=lambda t: t.id),
        renders=sorted(renders, key=lambda r: r.id),
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

        photo_files: dict[str, str] = {}
        async for piece in _photo_entries(archive, first, messages, photo_files):
            if piece:
                yield piece
        yield archive.add_json("photos.json", {"photos": _photos_document(held.photos, photo_files)})
        yield archive.add_json(
            "trainings.json", {"trainings": [_training_document(t) for t in held.trainings]}
        )

        image_files: dict[str, str] = {}
        for render in held.renders:
            for image in render.images:
                async for piece in _image_entry(archive, backends, tenant, render.id, image.id, image_files):
                    if piece:
                        yield piece
        yield archive.add_json("renders.json", {"renders": _renders_document(held.renders, image_files)})

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


async def _image_entry(
    archive: ZipStream,
    backends: BackendClients,
    tenant: str,
    render_id: str,
    image_id: str,
    files: dict[str, str],
) -> AsyncIterator[bytes]:
    """`renders/<render>/<image>.<ext>`, streamed from the renderer; an image no longer held is skipped."""
    request = renderer_pb2.FetchImageRequest(tenant=tenant, render_id=render_id, image_id=image_id)
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


async def _still_live(backends: BackendClients, tenant: str, subject_id: str) -> None:
    request = retention_pb2.GetSubjectRequest(tenant=tenant, subject_id=subject_id)
    subject = (await backends.retention.GetSubject(request, timeout=backends.timeout)).subject
    if subject.status in (retention_pb2.SUBJECT_STATUS_ERASING, retention_pb2.SUBJECT_STATUS_ERASED):
        raise ExportAborted("the subject is being erased")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _subject_document(subject: retention_pb2.Subject) -> dict[str, Any]:
    return {"exported_at": _now(), "subject": convert.subject(subject).model_dump(mode="json")}


def _photos_document(photos: list[ingest_pb2.Photo], files: dict[str, str]) -> list[dict[str, Any]]:
    return [convert.photo(photo).model_dump(mode="json") | {"file": files.get(photo.id)} for photo in photos]


def _training_document(training: trainer_pb2.Training) -> dict[str, Any]:
    document = convert.training(training).model_dump(mode="json")
    document["photo_ids"] = list(training.photo_ids)
    document["model"] = {
        "kind": "LoRA weights",
        "included": False,
        "why": "Derived from the photos and usable only with this software's base model; no service "
        "exports it. It is deleted with the subject or on its retention deadline.",
    }
    return document


def _renders_document(renders: list[renderer_pb2.Render], files: dict[str, str]) -> list[dict[str, Any]]:
    documents = []
    for render in renders:
        document = convert.render(render).model_dump(mode="json")
        for image in document["images"]:
            image["file"] = files.get(image["id"])
        documents.append(document)
    return documents
