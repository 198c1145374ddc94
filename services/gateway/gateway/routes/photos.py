"""Photos: stream an upload into ingest (never through disk), list a subject's verdicts."""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway import access, convert, schemas
from gateway.config import GatewaySettings
from gateway.contract import answers
from gateway.deps import Backends, Idempotent, PhotosRead, PhotosWrite
from gateway.paging import Limit, PhotoCursor, decode_cursor, next_cursor
from gateway.photo_listing import photo_page
from gateway.request_context import current_request_id
from gateway.uploads import UploadLimits, deadline_of, receive_photos

router = APIRouter(prefix="/v1/subjects/{subject_id}/photos", tags=["photos"])

#: The body is parsed by hand (see `gateway.uploads`), so OpenAPI is told its shape here.
_MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "format": "binary"},
                            "description": "One part per photo (JPEG, PNG, HEIC or WebP)",
                        }
                    },
                }
            }
        },
    }
}


#: The status of an upload whose every photo was rejected, by the first photo's first reason; any other
#: reason (a photo that is unreadable, useless or not wanted: `corrupt_image`, `no_face`, `too_blurry`,
#: `duplicate`, `different_person`...) is 422.
REJECTION_STATUS = {"file_too_large": 413, "unsupported_format": 415}


def rejection_status(code: str | None) -> int:
    return REJECTION_STATUS.get(code or "", 422)


#: Reasons a photo can be rejected for with 422 (ingest's `ReasonCode`s but the two with their own status).
REJECTION_REASONS = (
    "corrupt_image",
    "image_too_large",
    "image_too_small",
    "no_face",
    "multiple_faces",
    "face_too_small",
    "too_blurry",
    "too_dark",
    "overexposed",
    "too_many_photos",
    "duplicate",
    "different_person",
)
_EVERY_PHOTO_REJECTED = (
    "When every photo of the upload was rejected, the answer's status is that of the first photo's first "
    "reason, `error.code` is that reason and the body also has `photos`: every verdict, with the quality "
    "scores measured (a `RejectedUpload`)."
)
#: The upload's answers. Its 413, 415 and 422 are either the error envelope or a `RejectedUpload`.
UPLOAD_ANSWERS: dict[int | str, dict[str, Any]] = {
    **answers(
        "not_found", "subject_erased", "invalid_multipart", "no_files", "too_many_photos", "upload_timeout"
    ),
    **answers(
        "payload_too_large",
        "file_too_large",
        "too_many_files",
        "unsupported_media_type",
        "unsupported_format",
        model=schemas.RejectedUpload | schemas.ErrorResponse,
        note=_EVERY_PHOTO_REJECTED,
    ),
    422: {
        "model": schemas.RejectedUpload | schemas.ErrorResponse,
        "description": "\n".join(
            f"- `{reason}`: every photo was rejected, the first for this reason"
            for reason in REJECTION_REASONS
        )
        + f"\n\n{_EVERY_PHOTO_REJECTED}",
    },
}


@router.post(
    "",
    summary="Upload photos; each is sanitized and answered with a verdict",
    description="Scope `photos:write`. Streamed: files are never buffered whole or written to disk. "
    "Uploads draw from the caller's and the tenant's stricter upload rate limits. The whole body must "
    "arrive within the upload deadline (120 s by default), else 408 `upload_timeout` and the connection "
    "is closed. Accepts `Idempotency-Key` (the files' bytes are fingerprinted as they stream).",
    responses=UPLOAD_ANSWERS,
    openapi_extra=_MULTIPART_BODY,
    response_model=schemas.UploadResult,
)
async def upload_photos(
    subject_id: str, request: Request, principal: PhotosWrite, claim: Idempotent, backends: Backends
) -> schemas.UploadResult | JSONResponse:
    await access.live_subject(backends, principal, subject_id)
    settings = cast(GatewaySettings, request.app.state.settings)
    limits = UploadLimits(
        max_file_bytes=settings.max_upload_bytes,
        max_files=settings.max_files_per_request,
        seconds=settings.stream_timeout_seconds,
    )
    # With an Idempotency-Key, the files' bytes are fingerprinted as they stream (never buffered).
    store = claim.store if claim is not None else None
    digest = store.digest() if store is not None else None
    photos = await receive_photos(
        request.stream(),
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        backends,
        principal.tenant,
        subject_id,
        limits,
        deadline_of(request.scope.setdefault("state", {}), settings.stream_timeout_seconds),
        digest=digest,
    )
    if claim is not None and store is not None and digest is not None:
        claim.fingerprint = store.fingerprint(principal.tenant, "POST", request.url.path, digest.digest())
    result = schemas.UploadResult(photos=photos)
    if photos and all(photo.status == "rejected" for photo in photos):
        # Nothing usable arrived: a 4xx with the specific reason, so a client cannot mistake it for success.
        first = photos[0].reasons[0] if photos[0].reasons else None
        body = schemas.RejectedUpload(
            error=schemas.ErrorBody(
                code=first.code if first else "rejected",
                message=first.message if first else "Rejected.",
                request_id=current_request_id(),
            ),
            photos=photos,
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=rejection_status(body.error.code))
    return result


@router.get(
    "",
    summary="List a subject's photos and their verdicts (oldest first)",
    description="Scope `photos:read`.",
    responses=answers("not_found", "subject_erased"),
)
async def list_photos(
    subject_id: str, principal: PhotosRead, backends: Backends, limit: Limit = 50, cursor: PhotoCursor = None
) -> schemas.PhotoList:
    after = decode_cursor(cursor, "pho")
    await access.live_subject(backends, principal, subject_id)
    # Ingest cuts the page (oldest first) and its cursor is ingest's page token: a photo id.
    page = await photo_page(backends, principal.tenant, subject_id, limit, after)
    return schemas.PhotoList(
        photos=[convert.photo(photo) for photo in page.photos], next_cursor=next_cursor(page.next_page_token)
    )
