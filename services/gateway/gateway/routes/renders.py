"""Renders: styled headshots from a subject's succeeded training, and their images streamed through."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from gateway import access, convert, deps, schemas
from gateway.contract import answers, header
from gateway.deps import Backends, Idempotent, RendersRead, RendersWrite
from gateway.errors import ApiError, not_found
from gateway.paging import Limit, RenderCursor, decode_cursor, next_cursor
from gateway.photo_listing import every_photo
from gateway.render_choices import check_catalog_ids
from likeness.ids import is_valid_id
from likeness.v1 import common_pb2, ingest_pb2, renderer_pb2, trainer_pb2

router = APIRouter(tags=["renders"])

#: What an image may be served as; anything else goes out as opaque bytes.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})


def _training_not_found() -> ApiError:
    return ApiError(404, "training_not_found", "No such training for this subject.")


async def _succeeded_training(
    backends: Backends, tenant: str, subject_id: str, training_id: str
) -> trainer_pb2.Training:
    if not is_valid_id(training_id, "trn"):
        raise _training_not_found()
    request = trainer_pb2.GetTrainingRequest(tenant=tenant, training_id=training_id)
    try:
        training = (await backends.trainer.GetTraining(request, timeout=backends.timeout)).training
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise _training_not_found() from None
        raise
    if training.subject_id != subject_id:
        raise _training_not_found()
    if training.status != common_pb2.JOB_STATUS_SUCCEEDED:
        raise ApiError(409, "training_not_ready", "The training has not succeeded (yet).")
    return training


async def _latest_accepted_photo(backends: Backends, tenant: str, subject_id: str) -> str:
    """The photo an instant render conditions on: the subject's most recently accepted one."""
    photos = await every_photo(backends, tenant, subject_id)
    accepted = [photo for photo in photos if photo.status == ingest_pb2.PHOTO_STATUS_ACCEPTED]
    if not accepted:
        raise ApiError(
            409,
            "no_accepted_photos",
            "Instant mode needs one accepted photo of the subject; upload one first.",
        )
    return max(accepted, key=lambda photo: photo.created_at.ToDatetime()).id


@router.post(
    "/v1/subjects/{subject_id}/renders",
    status_code=202,
    summary="Render headshots in curated styles (or a team look) from a succeeded training, or instantly "
    "from one accepted photo",
    description="Scope `renders:write`. Accepts `Idempotency-Key`. Follow it with "
    "`GET /v1/renders/{id}/events` (Server-Sent Events).",
    responses={
        **answers(
            "not_found",
            "subject_erased",
            "training_not_found",
            "training_not_ready",
            "no_accepted_photos",
            "instant_unavailable",
            "unknown_style",
            "unknown_catalog_id",
            "invalid_images_per_style",
            "team_look_not_found",
            "team_look_conflict",
            "team_looks_unavailable",
            "consent_required",
            "quota_exceeded",
        ),
        202: {"headers": header("Location")},
    },
)
async def create_render(
    subject_id: str,
    body: schemas.CreateRenderRequest,
    principal: RendersWrite,
    claim: Idempotent,
    backends: Backends,
    response: Response,
) -> schemas.JobAccepted:
    await access.live_subject(backends, principal, subject_id)
    photo_id = await _latest_accepted_photo(backends, principal.tenant, subject_id) if body.instant else ""
    if body.training_id:
        await _succeeded_training(backends, principal.tenant, subject_id, body.training_id)
    styles = list(dict.fromkeys(body.styles))
    await check_catalog_ids(backends, styles, body.background, body.outfit, body.lighting)
    request = renderer_pb2.SubmitRenderRequest(
        tenant=principal.tenant,
        subject_id=subject_id,
        training_id=body.training_id or "",
        styles=styles,
        images_per_style=body.images_per_style,
        seed=body.seed,
        team_look_id=body.team_look_id or "",
        background=body.background or "",
        outfit=body.outfit or "",
        lighting=body.lighting or "",
        instant=body.instant,
        photo_id=photo_id,
        priority=convert.RENDER_PRIORITIES[body.priority],
    )
    render = (await backends.renderer.SubmitRender(request, timeout=backends.timeout)).render
    response.headers["Location"] = f"/v1/renders/{render.id}"
    return schemas.JobAccepted(id=render.id, status=convert.job_status(render.status))


@router.get(
    "/v1/subjects/{subject_id}/renders",
    summary="List a subject's renders (newest first)",
    description="Scope `renders:read`.",
    responses=answers("not_found", "subject_erased"),
)
async def list_renders(
    subject_id: str,
    principal: RendersRead,
    backends: Backends,
    limit: Limit = 50,
    cursor: RenderCursor = None,
) -> schemas.RenderList:
    after = decode_cursor(cursor, "ren")
    await access.live_subject(backends, principal, subject_id)
    request = renderer_pb2.ListRendersRequest(
        tenant=principal.tenant, subject_id=subject_id, page_size=limit, page_token=after
    )
    page = await backends.renderer.ListRenders(request, timeout=backends.timeout)
    return schemas.RenderList(
        renders=[convert.render(render) for render in page.renders],
        next_cursor=next_cursor(page.next_page_token),
    )


@router.get(
    "/v1/renders/{render_id}",
    summary="Read a render and its images",
    description="Scope `renders:read`. A poll may see the state of up to "
    "`LIKENESS_JOB_CACHE_SECONDS` (1 s) ago; the end is streamed at once by `/events`.",
    response_model=schemas.Render,
    responses=answers("not_found", "subject_erased"),
)
async def get_render(render_id: str, principal: RendersRead, http: Request) -> Response:
    # The app's parts straight from its state, not as dependencies: this is the route clients poll, and
    # FastAPI resolves every dependency of every request anew.
    backends, live, jobs = deps.backends_of(http), deps.live_subjects_of(http), deps.job_cache_of(http)

    async def fetch() -> tuple[str, bytes]:
        # The tenant's render, whoever asks: cached_job_json authorizes each request on what this gives.
        request = renderer_pb2.GetRenderRequest(tenant=principal.tenant, render_id=render_id)
        render = (
            await access.hide_missing(backends.renderer.GetRender(request, timeout=backends.timeout))
        ).render
        # Serialized once here (a validated model of our own), not validated again by the response model.
        return render.subject_id, convert.render(render).model_dump_json().encode()

    body = await access.cached_job_json(backends, principal, render_id, "ren", live, jobs, fetch)
    return Response(body, media_type="application/json")


@router.get(
    "/v1/renders/{render_id}/images/{image_id}",
    summary="Download one rendered image (streamed, never cached)",
    description="Scope `renders:read`.",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                media_type: {"schema": {"type": "string", "format": "binary"}}
                for media_type in ("image/png", "image/jpeg", "image/webp", "application/octet-stream")
            },
            "description": "The image (an image of another type than these three is sent as opaque bytes)",
        },
        **answers("not_found", "subject_erased"),
    },
)
async def get_image(
    render_id: str, image_id: str, principal: RendersRead, backends: Backends
) -> StreamingResponse:
    render = await access.owned_render(backends, principal, render_id)
    if not is_valid_id(image_id, "img") or image_id not in {image.id for image in render.images}:
        raise not_found()
    request = renderer_pb2.FetchImageRequest(tenant=principal.tenant, render_id=render_id, image_id=image_id)
    call = backends.renderer.FetchImage(request, timeout=backends.stream_timeout)
    messages = call.__aiter__()
    # The first message is read before answering, so a failure still gets a proper error response.
    try:
        first = await access.hide_missing(anext(messages))
    except StopAsyncIteration:
        raise ApiError(500, "internal", "Something went wrong on our side.") from None
    if first.WhichOneof("part") != "info":
        call.cancel()
        raise ApiError(500, "internal", "Something went wrong on our side.")
    content_type = (
        first.info.content_type if first.info.content_type in IMAGE_TYPES else "application/octet-stream"
    )
    return StreamingResponse(_chunks(call, messages), media_type=content_type)


async def _chunks(
    call: grpc.aio.UnaryStreamCall[renderer_pb2.FetchImageRequest, renderer_pb2.FetchImageResponse],
    messages: AsyncIterator[renderer_pb2.FetchImageResponse],
) -> AsyncIterator[bytes]:
    try:
        async for message in messages:
            if message.WhichOneof("part") == "chunk":
                yield message.chunk
    finally:
        call.cancel()  # the client went away early, or the stream is done (then this is a no-op)
