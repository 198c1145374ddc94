"""Photos: stream an upload into ingest (never through disk), list a subject's verdicts."""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway import access, convert, schemas
from gateway.config import GatewaySettings
from gateway.deps import Backends, PhotosRead, PhotosWrite
from gateway.errors import error_responses
from gateway.uploads import UploadLimits, receive_photos
from likeness.v1 import ingest_pb2

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
                            "items": {"type": "string", "format": "binary"},
                            "description": "One part per photo (JPEG, PNG, HEIC or WebP)",
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    summary="Upload photos; each is sanitized and answered with a verdict",
    responses={
        **error_responses(400, 404, 410, 413, 415, 429),
        422: {
            "model": schemas.RejectedUpload,
            "description": "Every photo was rejected: `error.code` is the first photo's first reason "
            "(e.g. `unsupported_format`, `corrupt_image`, `no_face`); `photos` holds every verdict.",
        },
    },
    openapi_extra=_MULTIPART_BODY,
    response_model=schemas.UploadResult,
)
async def upload_photos(
    subject_id: str, request: Request, principal: PhotosWrite, backends: Backends
) -> schemas.UploadResult | JSONResponse:
    await access.live_subject(backends, principal, subject_id)
    settings = cast(GatewaySettings, request.app.state.settings)
    limits = UploadLimits(max_file_bytes=settings.max_upload_bytes, max_files=settings.max_files_per_request)
    photos = await receive_photos(
        request.stream(),
        request.headers.get("content-type"),
        request.headers.get("content-length"),
        backends,
        principal.tenant,
        subject_id,
        limits,
    )
    result = schemas.UploadResult(photos=photos)
    if photos and all(photo.status == "rejected" for photo in photos):
        # Nothing usable arrived: a 4xx with the specific reason, so a client cannot mistake it for success.
        first = photos[0].reasons[0] if photos[0].reasons else None
        body = schemas.RejectedUpload(
            error=schemas.ErrorBody(
                code=first.code if first else "rejected", message=first.message if first else "Rejected."
            ),
            photos=photos,
        )
        return JSONResponse(body.model_dump(mode="json"), status_code=422)
    return result


@router.get("", summary="List a subject's photos and their verdicts", responses=error_responses(404, 410))
async def list_photos(subject_id: str, principal: PhotosRead, backends: Backends) -> schemas.PhotoList:
    await access.live_subject(backends, principal, subject_id)
    request = ingest_pb2.ListPhotosRequest(tenant=principal.tenant, subject_id=subject_id)
    photos = (await backends.ingest.ListPhotos(request, timeout=backends.timeout)).photos
    return schemas.PhotoList(photos=[convert.photo(photo) for photo in photos])
