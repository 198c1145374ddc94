"""Trainings: start one from a subject's accepted photos, follow it, cancel it."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Body, Request, Response

from gateway import access, convert, schemas
from gateway.config import GatewaySettings
from gateway.deps import Backends, TrainingsRead, TrainingsWrite
from gateway.errors import ApiError, error_responses
from likeness.v1 import ingest_pb2, trainer_pb2

router = APIRouter(tags=["trainings"])


#: What a training needs when the settings do not say (the rule before a minimum was configurable).
@router.post(
    "/v1/subjects/{subject_id}/trainings",
    status_code=202,
    summary="Train the subject's model from their accepted photos",
    responses={
        **error_responses(400, 404, 409, 410, 429),
        409: {
            "model": schemas.ErrorResponse,
            "description": "`no_accepted_photos`, or `not_enough_photos`: fewer accepted photos than a "
            "training needs (`LIKENESS_MIN_PHOTOS_FOR_TRAINING`)",
        },
    },
)
async def create_training(
    subject_id: str,
    principal: TrainingsWrite,
    backends: Backends,
    http: Request,
    response: Response,
    body: Annotated[schemas.CreateTrainingRequest | None, Body()] = None,
) -> schemas.JobAccepted:
    await access.live_subject(backends, principal, subject_id)
    listing = ingest_pb2.ListPhotosRequest(tenant=principal.tenant, subject_id=subject_id)
    photos = (await backends.ingest.ListPhotos(listing, timeout=backends.timeout)).photos
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


@router.get("/v1/trainings/{training_id}", summary="Read a training", responses=error_responses(404, 410))
async def get_training(training_id: str, principal: TrainingsRead, backends: Backends) -> schemas.Training:
    return convert.training(await access.owned_training(backends, principal, training_id))


@router.post(
    "/v1/trainings/{training_id}/cancel",
    status_code=202,
    summary="Cancel a training",
    responses=error_responses(404, 409, 410),
)
async def cancel_training(
    training_id: str, principal: TrainingsWrite, backends: Backends
) -> schemas.Training:
    await access.owned_training(backends, principal, training_id)
    request = trainer_pb2.CancelTrainingRequest(tenant=principal.tenant, training_id=training_id)
    return convert.training(
        (await backends.trainer.CancelTraining(request, timeout=backends.timeout)).training
    )
