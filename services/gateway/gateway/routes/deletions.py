"""Per-item deletion: one photo, one training and its model, one render, one image (`gateway.item_deletion`).

Each answer says what was deleted, how many stored versions went, and plainly that it is not a
crypto-erase (a restored backup still opens with the person's key until erasure or the backup expires).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from gateway import item_deletion
from gateway.contract import answers
from gateway.deletion_schemas import ItemDeletion
from gateway.deps import Backends, Jobs, PhotosWrite, RendersWrite, TrainingsWrite

router = APIRouter(tags=["deletion"])

_NOT_A_CRYPTO_ERASE = (
    " Not a crypto-erase: the person's key still opens a restored backup of the item until the key is "
    "destroyed (erasure) or the backup expires (`backups_expire_within_days`)."
)
WithModels = Annotated[
    bool,
    Query(
        description="Delete the models trained on the photo too (needs `trainings:write` as well); without "
        "it, the answer names them with a link each"
    ),
]


@router.delete(
    "/v1/subjects/{subject_id}/photos/{photo_id}",
    summary="Delete one photo: every version of its crop and face template",
    description="Scope `photos:write`. The answer names the models trained on the photo (their weights and "
    "the templates sealed beside them outlive it) and deletes them too with `with_models=true`; a training "
    "of it still queued or running is then refused (409) before anything is deleted. A retry is safe."
    + _NOT_A_CRYPTO_ERASE,
    responses=answers("not_found", "subject_erased", "training_running"),
)
async def delete_photo(
    subject_id: str,
    photo_id: str,
    principal: PhotosWrite,
    backends: Backends,
    jobs: Jobs,
    with_models: WithModels = False,
) -> ItemDeletion:
    try:
        return await item_deletion.delete_photo(backends, principal, subject_id, photo_id, with_models)
    finally:
        jobs.invalidate_subject(principal.tenant, subject_id)


@router.delete(
    "/v1/trainings/{training_id}",
    summary="Delete a training and its model: every version of its weights, templates and checkpoints",
    description="Scope `trainings:write`. A training still queued or running is refused (409): cancel it "
    "first. Renders made from it stay (delete them one by one). A retry is safe." + _NOT_A_CRYPTO_ERASE,
    responses=answers("not_found", "subject_erased", "training_running"),
)
async def delete_training(
    training_id: str, principal: TrainingsWrite, backends: Backends, jobs: Jobs
) -> ItemDeletion:
    answer = await item_deletion.delete_training(backends, principal, training_id)
    jobs.invalidate_subject(principal.tenant, answer.subject_id)
    return answer


@router.delete(
    "/v1/renders/{render_id}",
    summary="Delete a render: every version of every image of it",
    description="Scope `renders:write`. A render still queued or running is refused (409): cancel it "
    "first. A retry is safe." + _NOT_A_CRYPTO_ERASE,
    responses=answers("not_found", "subject_erased", "render_running"),
)
async def delete_render(
    render_id: str, principal: RendersWrite, backends: Backends, jobs: Jobs
) -> ItemDeletion:
    answer = await item_deletion.delete_render(backends, principal, render_id)
    jobs.invalidate_subject(principal.tenant, answer.subject_id)
    return answer


@router.delete(
    "/v1/renders/{render_id}/images/{image_id}",
    summary="Reject one rendered image: every version of it is deleted",
    description="Scope `renders:write`. The image leaves the render (`render` in the answer) and every "
    "stored version of it is deleted; the render counts it as rejected. A retry is safe."
    + _NOT_A_CRYPTO_ERASE,
    responses=answers("not_found", "subject_erased"),
)
async def reject_image(
    render_id: str, image_id: str, principal: RendersWrite, backends: Backends, jobs: Jobs
) -> ItemDeletion:
    answer = await item_deletion.reject_image(backends, principal, render_id, image_id)
    jobs.invalidate_subject(principal.tenant, answer.subject_id)
    return answer
