"""Per-item deletion, driven from the gateway: the owner marks, retention purges, the owner confirms.

The gateway holds no storage right and decides nothing about what is stored: each step is checked by the
service that does it, against the caller's token that travels with the call (issue 14's zero trust).

1. The service owning the item's record (ingest: a photo; trainer: a training; renderer: a render or one
   of its images) verifies the token, refuses a job still queued or running (409), and marks the record,
   which hides it from every read from then on.
2. Retention, the only identity allowed to remove object versions, removes every version of the item,
   named from its kind and ids under the subject's own prefix (`retention.item_purge`).
3. The owner audits the deletion (`notice=not_a_crypto_erase`) and forgets the record.

Every step is idempotent: a retry of the whole request after a failure (or a lost answer) finishes the
work; a crash between steps leaves a hidden record, never an item listed whose objects are gone.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc

from gateway import access, convert
from gateway.auth import Principal, insufficient_scope
from gateway.backends import Backends
from gateway.deletion_schemas import ItemDeletion, ItemKind, TrainedModel
from gateway.errors import ApiError, not_found
from likeness.jobs import TERMINAL
from likeness.v1 import ingest_pb2, renderer_pb2, retention_pb2, trainer_pb2

T = TypeVar("T")
Kind = retention_pb2.ItemKind
#: The largest page the trainer lists (`likeness.record_pages.MAX_PAGE_SIZE`).
TRAININGS_PAGE = 100
#: What deleting the models with a photo needs besides the photo route's own scope.
MODELS_SCOPE = "trainings:write"


def _busy(kind: str) -> ApiError:
    return ApiError(
        409, f"{kind}_running", f"The {kind} is still queued or running: cancel it, then delete it."
    )


async def _at_owner(call: Awaitable[T], busy: str = "") -> T:
    """A step at the owner: its NOT_FOUND is the gateway's 404; a job still running, a clear 409."""
    try:
        return await access.hide_missing(call)
    except grpc.aio.AioRpcError as exc:
        if busy and exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
            raise _busy(busy) from None
        raise


async def _purge(
    backends: Backends,
    tenant: str,
    subject_id: str,
    kind: retention_pb2.ItemKind.ValueType,
    item_id: str,
    parent_id: str = "",
) -> retention_pb2.PurgeItemResponse:
    request = retention_pb2.PurgeItemRequest(
        tenant=tenant, subject_id=subject_id, kind=kind, item_id=item_id, parent_id=parent_id
    )
    return await access.hide_missing(backends.retention.PurgeItem(request, timeout=backends.timeout))


def _answer(
    kind: ItemKind, item_id: str, subject_id: str, purged: retention_pb2.PurgeItemResponse
) -> ItemDeletion:
    return ItemDeletion(
        kind=kind,
        id=item_id,
        subject_id=subject_id,
        versions_deleted=purged.versions_deleted,
        backups_expire_within_days=purged.backups_retention_days,
    )


async def delete_training(backends: Backends, principal: Principal, training_id: str) -> ItemDeletion:
    """A training and its model (LoRA, the face templates sealed beside it, checkpoints)."""
    access.require_id(training_id, "trn")
    tenant = principal.tenant
    marked = (
        await _at_owner(
            backends.trainer.DeleteTraining(
                trainer_pb2.DeleteTrainingRequest(tenant=tenant, training_id=training_id),
                timeout=backends.timeout,
            ),
            busy="training",
        )
    ).training
    if not principal.can_touch(marked.subject_id):  # the trainer checked it too
        raise not_found()
    await access.live_subject(backends, principal, marked.subject_id)
    purged = await _purge(backends, tenant, marked.subject_id, Kind.ITEM_KIND_MODEL, training_id)
    confirm = trainer_pb2.DeleteTrainingRequest(tenant=tenant, training_id=training_id, purged=True)
    await _at_owner(backends.trainer.DeleteTraining(confirm, timeout=backends.timeout))
    return _answer("model", training_id, marked.subject_id, purged)


async def delete_render(backends: Backends, principal: Principal, render_id: str) -> ItemDeletion:
    """A render and every image of it."""
    access.require_id(render_id, "ren")
    tenant = principal.tenant
    marked = (
        await _at_owner(
            backends.renderer.DeleteRender(
                renderer_pb2.DeleteRenderRequest(tenant=tenant, render_id=render_id), timeout=backends.timeout
            ),
            busy="render",
        )
    ).render
    if not principal.can_touch(marked.subject_id):
        raise not_found()
    await access.live_subject(backends, principal, marked.subject_id)
    purged = await _purge(backends, tenant, marked.subject_id, Kind.ITEM_KIND_RENDER, render_id)
    confirm = renderer_pb2.DeleteRenderRequest(tenant=tenant, render_id=render_id, purged=True)
    await _at_owner(backends.renderer.DeleteRender(confirm, timeout=backends.timeout))
    return _answer("render", render_id, marked.subject_id, purged)


async def reject_image(
    backends: Backends, principal: Principal, render_id: str, image_id: str
) -> ItemDeletion:
    """One image of a render: it leaves the render, which counts it as rejected."""
    access.require_id(render_id, "ren")
    access.require_id(image_id, "img")
    tenant = principal.tenant
    check = renderer_pb2.RejectImageRequest(tenant=tenant, render_id=render_id, image_id=image_id)
    render = (await _at_owner(backends.renderer.RejectImage(check, timeout=backends.timeout))).render
    if not principal.can_touch(render.subject_id):
        raise not_found()
    await access.live_subject(backends, principal, render.subject_id)
    purged = await _purge(backends, tenant, render.subject_id, Kind.ITEM_KIND_IMAGE, image_id, render_id)
    confirm = renderer_pb2.RejectImageRequest(
        tenant=tenant, render_id=render_id, image_id=image_id, purged=True
    )
    after = (await _at_owner(backends.renderer.RejectImage(confirm, timeout=backends.timeout))).render
    answer = _answer("image", image_id, render.subject_id, purged)
    answer.render_id = render_id
    answer.render = convert.render(after)
    return answer


async def trainings_of_photo(
    backends: Backends, tenant: str, subject_id: str, photo_id: str
) -> list[trainer_pb2.Training]:
    """The subject's trainings that learned from the photo (their records name the photos they used)."""
    found: list[trainer_pb2.Training] = []
    token = ""
    while True:
        request = trainer_pb2.ListTrainingsRequest(
            tenant=tenant, subject_id=subject_id, page_size=TRAININGS_PAGE, page_token=token
        )
        page = await backends.trainer.ListTrainings(request, timeout=backends.timeout)
        found.extend(training for training in page.trainings if photo_id in training.photo_ids)
        token = page.next_page_token
        if not token:
            return found


async def delete_photo(
    backends: Backends, principal: Principal, subject_id: str, photo_id: str, with_models: bool
) -> ItemDeletion:
    """A photo (its crop and face template); with `with_models`, the models trained on it too. Without, the
    answer names them with a link each: their weights and sealed templates outlive the photo."""
    if with_models and MODELS_SCOPE not in principal.scopes:
        raise insufficient_scope(MODELS_SCOPE)
    await access.live_subject(backends, principal, subject_id)
    access.require_id(photo_id, "pho")
    tenant = principal.tenant
    trainings = await trainings_of_photo(backends, tenant, subject_id, photo_id)
    if with_models and any(training.status not in TERMINAL for training in trainings):
        raise _busy("training")  # refused before anything is deleted
    models = []
    for training in trainings:
        # The models first: a retry after a failure here still finds the photo, and finishes both.
        if with_models:
            await delete_training(backends, principal, training.id)
        models.append(
            TrainedModel(
                training_id=training.id,
                deleted=with_models,
                delete_url=None if with_models else f"/v1/trainings/{training.id}",
            )
        )
    mark = ingest_pb2.DeletePhotoRequest(tenant=tenant, subject_id=subject_id, photo_id=photo_id)
    await _at_owner(backends.ingest.DeletePhoto(mark, timeout=backends.timeout))
    purged = await _purge(backends, tenant, subject_id, Kind.ITEM_KIND_PHOTO, photo_id)
    confirm = ingest_pb2.DeletePhotoRequest(
        tenant=tenant, subject_id=subject_id, photo_id=photo_id, purged=True
    )
    await _at_owner(backends.ingest.DeletePhoto(confirm, timeout=backends.timeout))
    answer = _answer("photo", photo_id, subject_id, purged)
    answer.models_trained_on_it = models
    return answer
