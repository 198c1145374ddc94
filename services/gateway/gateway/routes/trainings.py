"""Trainings: start one from a subject's accepted photos, follow it, cancel it."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Body, Request, Response

from gateway import access, convert, deps, schemas
from gateway.config import GatewaySettings
from gateway.contract import answers, header
from gateway.deps import Backends, Idempotent, Jobs, TrainingsRead, TrainingsWrite
from gateway.errors import ApiError
from gateway.paging import Limit, TrainingCursor, decode_cursor, next_cursor
from gateway.photo_listing import every_photo
from likeness.v1 import ingest_pb2, trainer_pb2

router = APIRouter(tags=["trainings"])


@router.post(
    "/v1/subjects/{subject_id}/trainings",
    status_code=202,
    summary="Train the subject's model from their accepted photos",
    description="Scope `trainings:write`. Accepts `Idempotency-Key`. Follow it with "
    "`GET /v1/trainings/{id}/events` (Server-Sent Events).",
    responses={
        **answers(
            "not_found",
            "subject_erased",
            "no_accepted_photos",
            "not_enough_photos",
            "invalid_steps",
            "consent_required",
            "quota_exceeded",
        ),
        202: {"headers": header("Location")},
    },
)
async def create_training(
    subject_id: str,
    principal: TrainingsWrite,
    claim: Idempotent,
    backends: Backends,
    http: Request,
    response: Response,
    body: Annotated[schemas.CreateTrainingRequest | None, Body()] = None,
) -> schemas.JobAccepted:
    await access.live_subject(backends, principal, subject_id)
    photos = await every_photo(backends, principal.tenant, subject_id)
    accepted = [photo.id for photo in photos if photo.status == ingest_pb2.PHOTO_STATUS_ACCEPTED]
    if not accepted:
        raise ApiError(409, "no_accepted_photos", "The subject has no accepted photos to train on.")
    needed = cast(GatewaySettings, http.app.state.settings).min_photos_for_training
    if len(accepted) < needed:
        raise ApiError(
            409,
            "not_enough_photos",
            f"Training needs at least {needed} accepted photos of the subject; they have {len(accepted)}. "
            "Upload more photos first.",
        )
    request = trainer_pb2.SubmitTrainingRequest(
        tenant=principal.tenant,
        subject_id=subject_id,
        photo_ids=accepted,
        steps=body.steps if body is not None and body.steps is not None else 0,
    )
    training = (await backends.trainer.SubmitTraining(request, timeout=backends.timeout)).training
    response.headers["Location"] = f"/v1/trainings/{training.id}"
    return schemas.JobAccepted(id=training.id, status=convert.job_status(training.status))


@router.get(
    "/v1/subjects/{subject_id}/trainings",
    summary="List a subject's trainings (newest first)",
    description="Scope `trainings:read`.",
    responses=answers("not_found", "subject_erased"),
)
async def list_trainings(
    subject_id: str,
    principal: TrainingsRead,
    backends: Backends,
    limit: Limit = 50,
    cursor: TrainingCursor = None,
) -> schemas.TrainingList:
    after = decode_cursor(cursor, "trn")
    await access.live_subject(backends, principal, subject_id)
    request = trainer_pb2.ListTrainingsRequest(
        tenant=principal.tenant, subject_id=subject_id, page_size=limit, page_token=after
    )
    page = await backends.trainer.ListTrainings(request, timeout=backends.timeout)
    return schemas.TrainingList(
        trainings=[convert.training(training) for training in page.trainings],
        next_cursor=next_cursor(page.next_page_token),
    )


@router.get(
    "/v1/trainings/{training_id}",
    summary="Read a training",
    description="Scope `trainings:read`. A poll may see the state of up to "
    "`LIKENESS_JOB_CACHE_SECONDS` (1 s) ago; progress is streamed at once by `/events`.",
    response_model=schemas.Training,
    responses=answers("not_found", "subject_erased"),
)
async def get_training(training_id: str, principal: TrainingsRead, http: Request) -> Response:
    # The app's parts straight from its state, not as dependencies: this is the route clients poll, and
    # FastAPI resolves every dependency of every request anew.
    backends, live, jobs = deps.backends_of(http), deps.live_subjects_of(http), deps.job_cache_of(http)

    async def fetch() -> tuple[str, bytes]:
        # The tenant's training, whoever asks: cached_job_json authorizes each request on what this gives.
        request = trainer_pb2.GetTrainingRequest(tenant=principal.tenant, training_id=training_id)
        training = (
            await access.hide_missing(backends.trainer.GetTraining(request, timeout=backends.timeout))
        ).training
        # Serialized once here (a validated model of our own), not validated again by the response model.
        return training.subject_id, convert.training(training).model_dump_json().encode()

    body = await access.cached_job_json(backends, principal, training_id, "trn", live, jobs, fetch)
    return Response(body, media_type="application/json")


@router.post(
    "/v1/trainings/{training_id}/cancel",
    status_code=202,
    summary="Cancel a training",
    description="Scope `trainings:write`. Accepts `Idempotency-Key`.",
    responses=answers("not_found", "subject_erased"),
)
async def cancel_training(
    training_id: str, principal: TrainingsWrite, claim: Idempotent, backends: Backends, jobs: Jobs
) -> schemas.Training:
    training = await access.owned_training(backends, principal, training_id)
    if claim is not None:
        claim.subject = training.subject_id
        await claim.index()
    request = trainer_pb2.CancelTrainingRequest(tenant=principal.tenant, training_id=training_id)
    try:
        cancelled = (await backends.trainer.CancelTraining(request, timeout=backends.timeout)).training
    finally:
        # This replica's next read shows the cancellation (others hear the trainer's event).
        jobs.invalidate_subject(principal.tenant, training.subject_id)
    return convert.training(cancelled)
