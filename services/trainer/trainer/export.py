"""A subject's trained models, decrypted for their data export (GDPR access and portability).

The trainer's API owns the training records, so it is the one that opens the models for an export: it knows
which trainings succeeded, and its Vault policy holds decrypt (never a data key) for exactly this; its S3
identity reads only the LoRAs and the face templates sealed beside them (`likeness.provisioning`). Each model
goes out whole as the renderer loads it (safetensors, `likeness_ml.lora_format`), with its face templates
as numbers; one model is held in memory at a time. A model already deleted (on its deadline, or by the
person) is skipped: the export holds what is held, and the training's record still says it existed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from likeness.ids import is_valid_id
from likeness.object_names import lora_key, model_faces_key
from likeness.sealed import ObjectRef, SealedObjects
from likeness.store import ObjectMissing
from likeness.v1 import common_pb2, trainer_pb2
from likeness_ml.face_templates import unpack_template_set
from trainer.training_objects import LORA_KIND, MODEL_FACES_KIND

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
SUCCEEDED = common_pb2.JobStatus.JOB_STATUS_SUCCEEDED


def _templates(sealed: SealedObjects, ref: ObjectRef) -> list[common_pb2.FaceEmbedding]:
    """The set sealed beside a model; none for a model trained before sets were kept (or a set not
    readable by this version: the model itself still goes out)."""
    try:
        embeddings = unpack_template_set(sealed.get(ref))
    except ObjectMissing:
        return []
    except ValueError:
        log.warning("a model's face template set is not readable; exported without it")
        return []
    return [common_pb2.FaceEmbedding(values=row.tolist()) for row in embeddings]


async def exported_models(
    sealed: SealedObjects,
    tenant: str,
    subject_id: str,
    trainings: list[trainer_pb2.Training],
    before_sending: Callable[[str], Awaitable[None]],
) -> AsyncIterator[trainer_pb2.ExportModelsResponse]:
    """For each succeeded training of `subject_id` whose LoRA is still stored: its header (with the model's
    face templates), then the LoRA's safetensors bytes in chunks. `before_sending(training_id)` runs once
    per model, decrypted but not yet sent (the audit record of the access: if it fails, nothing is sent).

    Objects are named from the request's `tenant` and `subject_id` (checked against the caller's token) and
    the training's id, never from the record's own fields (a record naming another subject is skipped).
    Raises what reading a sealed object raises (`KeyDestroyed`, `VaultUnavailable`, `StoreError`...) for the
    caller to turn into a gRPC status; a LoRA that is simply gone is skipped.
    """
    sent = skipped = 0
    for training in sorted(trainings, key=lambda t: t.id):
        if training.status != SUCCEEDED:
            continue
        if (training.tenant, training.subject_id) != (tenant, subject_id) or not is_valid_id(
            training.id, "trn"
        ):
            log.warning("a training record names another subject; skipped")
            continue
        lora_ref = ObjectRef(tenant, subject_id, lora_key(tenant, subject_id, training.id), LORA_KIND)
        faces_ref = ObjectRef(
            tenant, subject_id, model_faces_key(tenant, subject_id, training.id), MODEL_FACES_KIND
        )
        try:
            data = await asyncio.to_thread(sealed.get, lora_ref)
        except ObjectMissing:
            skipped += 1
            continue
        templates = await asyncio.to_thread(_templates, sealed, faces_ref)
        await before_sending(training.id)
        header = trainer_pb2.ExportedModel(
            training_id=training.id, format="safetensors", size=len(data), face_templates=templates
        )
        yield trainer_pb2.ExportModelsResponse(model=header)
        for start in range(0, len(data), CHUNK):
            yield trainer_pb2.ExportModelsResponse(chunk=data[start : start + CHUNK])
        del data
        sent += 1
    log.info("models exported", extra={"models": sent, "models_gone": skipped})
