"""Photo uploads: from the request body straight into ingest.SanitizePhoto calls, in memory only.

Each file part becomes one client-streaming call (a header, then chunks of at most 256 KiB) that is fed
as the part's bytes arrive, so the gateway holds at most one chunk per file and never a whole photo.
Limits are checked while streaming. Calls run in parallel with the rest of the upload; their verdicts
are collected at the end. The client's filename is echoed in the answer only: ingest never sees it and
it is never logged.

The upload has one deadline, `LIKENESS_STREAM_TIMEOUT_SECONDS` after it arrived (`deadline_of`): every
ingest call it makes has that instant as its gRPC deadline, and a body not read to its end by then is
not read any further: the calls are cancelled (ingest frees their slots at once), the answer is 408
`upload_timeout`, and the connection is closed (`gateway.edge` marks an answer to an unread body so).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from python_multipart.exceptions import MultipartParseError

from gateway import convert, schemas
from gateway.backends import Backends
from gateway.errors import ApiError, subject_erased
from gateway.idempotency import update_upload_digest
from gateway.multipart_stream import FileData, FileEnded, FileStarted, MultipartEvents, form_boundary
from likeness.rpc_errors import error_code
from likeness.v1 import ingest_pb2

if TYPE_CHECKING:
    SanitizeCall = grpc.aio.StreamUnaryCall[ingest_pb2.SanitizePhotoRequest, ingest_pb2.SanitizePhotoResponse]

CHUNK_BYTES = 256 * 1024
#: Room for part headers and boundaries on top of the files themselves.
FORM_OVERHEAD_BYTES = 1024 * 1024
#: Where the edge leaves an upload's deadline (event loop time; a key of the ASGI scope's "state").
UPLOAD_DEADLINE_KEY = "likeness_upload_deadline"


def deadline_of(state: dict[str, Any], seconds: float) -> float:
    """The upload's deadline (event loop time): the one the edge set at its arrival, else `seconds` from
    now, kept for the rest of the request."""
    deadline = state.get(UPLOAD_DEADLINE_KEY)
    if not isinstance(deadline, float):
        deadline = asyncio.get_running_loop().time() + seconds
        state[UPLOAD_DEADLINE_KEY] = deadline
    return deadline


def upload_timeout(seconds: float) -> ApiError:
    return ApiError(
        408,
        "upload_timeout",
        f"The upload was not received within {seconds:g} s; nothing more of it was read. Earlier files of "
        "this request may have been stored: list the subject's photos to see which.",
    )


def _remaining(deadline: float) -> float:
    """Seconds left until `deadline` (event loop time), as a gRPC timeout (never zero or negative)."""
    return max(0.001, deadline - asyncio.get_running_loop().time())


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int
    max_files: int
    #: The upload's deadline, in seconds from its arrival (for the message of its 408).
    seconds: float = 120.0

    @property
    def max_body_bytes(self) -> int:
        return self.max_files * self.max_file_bytes + FORM_OVERHEAD_BYTES


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


class PhotoUpload:
    """One file part on its way into one SanitizePhoto call."""

    def __init__(self, call: SanitizeCall, filename: str | None, number: int, limits: UploadLimits) -> None:
        self.call = call
        self.filename = filename
        self.number = number
        self.limits = limits
        self.size = 0
        self._pending = bytearray()
        self._closed = False

    async def begin(self, tenant: str, subject_id: str, content_type: str) -> None:
        header = ingest_pb2.PhotoUploadHeader(tenant=tenant, subject_id=subject_id, content_type=content_type)
        await self._send(ingest_pb2.SanitizePhotoRequest(header=header))

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limits.max_file_bytes:
            raise ApiError(
                413,
                "file_too_large",
                f"File {self.number} is larger than {_mib(self.limits.max_file_bytes)}. Earlier files "
                "of this request may have been stored: list the subject's photos to see which.",
            )
        self._pending += data
        while len(self._pending) >= CHUNK_BYTES:
            await self._send(ingest_pb2.SanitizePhotoRequest(chunk=bytes(self._pending[:CHUNK_BYTES])))
            del self._pending[:CHUNK_BYTES]

    async def end(self) -> None:
        if self._pending:
            await self._send(ingest_pb2.SanitizePhotoRequest(chunk=bytes(self._pending)))
            self._pending.clear()
        if not self._closed:
            await self.call.done_writing()

    async def verdict(self) -> schemas.UploadedPhoto:
        try:
            response = await self.call
        except grpc.aio.AioRpcError as exc:
            raise _refusal(exc, self.number) from None
        return convert.uploaded_photo(response.photo, self.filename)

    def cancel(self) -> None:
        self._pending.clear()
        self.call.cancel()

    async def _send(self, message: ingest_pb2.SanitizePhotoRequest) -> None:
        if self._closed:
            return
        try:
            await self.call.write(message)
        except asyncio.InvalidStateError:
            # Ingest answered before the end (e.g. it already rejected the file): the rest is not needed.
            self._closed = True


def _refusal(exc: grpc.aio.AioRpcError, number: int) -> ApiError | grpc.aio.AioRpcError:
    """Ingest refused a whole file (not a verdict on its content): the answer for the whole request.

    `subject_erased` is the gateway's 410; `too_many_photos` (FAILED_PRECONDITION) keeps ingest's code and
    message and becomes 409. Anything else goes to the common gRPC mapping (e.g. 503 while storage is down).
    """
    code = error_code(exc)
    if code == "subject_erased":
        return subject_erased()
    if code == "too_many_photos":
        return ApiError(
            409,
            code,
            f"File {number}: {exc.details()} Earlier files of this request may have been stored: list the "
            "subject's photos to see which.",
        )
    return exc


async def receive_photos(
    body: AsyncIterator[bytes],
    content_type: str | None,
    content_length: str | None,
    backends: Backends,
    tenant: str,
    subject_id: str,
    limits: UploadLimits,
    deadline: float,
    digest: hmac.HMAC | None = None,
) -> list[schemas.UploadedPhoto]:
    """The verdicts of the upload's photos; raises `upload_timeout` if its body is not read by `deadline`
    (event loop time), which is also every ingest call's deadline."""
    boundary = form_boundary(content_type)
    if boundary is None:
        raise ApiError(415, "unsupported_media_type", "Send photos as multipart/form-data with `file` parts.")
    if not boundary:
        raise ApiError(400, "invalid_multipart", "The multipart/form-data content type has no boundary.")
    if (
        content_length is not None
        and content_length.isdigit()
        and int(content_length) > limits.max_body_bytes
    ):
        raise ApiError(413, "payload_too_large", f"The request is larger than {_mib(limits.max_body_bytes)}.")

    uploads: list[PhotoUpload] = []
    try:
        try:
            async with asyncio.timeout_at(deadline):
                await _stream_parts(
                    body,
                    MultipartEvents(boundary),
                    backends,
                    tenant,
                    subject_id,
                    limits,
                    uploads,
                    deadline,
                    digest,
                )
        except TimeoutError:
            raise upload_timeout(limits.seconds) from None
        if not uploads:
            raise ApiError(400, "no_files", "The request has no `file` parts.")
        return [await upload.verdict() for upload in uploads]
    except BaseException:
        for upload in uploads:
            upload.cancel()
        raise


async def _stream_parts(
    body: AsyncIterator[bytes],
    events: MultipartEvents,
    backends: Backends,
    tenant: str,
    subject_id: str,
    limits: UploadLimits,
    uploads: list[PhotoUpload],
    deadline: float,
    digest: hmac.HMAC | None = None,
) -> None:
    current: PhotoUpload | None = None
    received = 0
    async for chunk in body:
        received += len(chunk)
        if received > limits.max_body_bytes:
            raise ApiError(
                413, "payload_too_large", f"The request is larger than {_mib(limits.max_body_bytes)}."
            )
        try:
            parsed = events.feed(chunk)
        except MultipartParseError:
            raise ApiError(400, "invalid_multipart", "The multipart/form-data body is malformed.") from None
        for event in parsed:
            if digest is not None:
                update_upload_digest(digest, event)
            if isinstance(event, FileStarted):
                if len(uploads) >= limits.max_files:
                    raise ApiError(
                        413, "too_many_files", f"Send at most {limits.max_files} files per request."
                    )
                # The upload's own deadline, not a fresh one: ingest stops waiting when the gateway does.
                call = backends.ingest.SanitizePhoto(None, timeout=_remaining(deadline))
                current = PhotoUpload(call, event.filename, len(uploads) + 1, limits)
                uploads.append(current)
                await current.begin(tenant, subject_id, event.content_type)
            elif isinstance(event, FileData) and current is not None:
                await current.write(event.data)
            elif isinstance(event, FileEnded) and current is not None:
                await current.end()
                current = None
        if events.finished:
            return
    raise ApiError(
        400, "invalid_multipart", "The multipart/form-data body ended before its closing boundary."
    )
