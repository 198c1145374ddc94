"""The objects one training writes, all under `.../models/<training>/`: its checkpoints, its LoRA and the
face templates of the photos it was trained on (the renderer's identity reference for the model's whole
life; the photos' own templates expire with the photos). Deleting the model deletes them with it.

Everything is sealed under the subject's key (``SealedObjects``); deleting always removes every version,
because the bucket is versioned and an old version of a checkpoint is as personal as the LoRA. Blocking
(S3 and Vault clients are synchronous): async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import posixpath

from likeness.object_names import checkpoint_key, face_template_key, lora_key, model_faces_key
from likeness.sealed import ObjectRef, SealedObjects
from likeness.store import ObjectMissing, ObjectStore
from likeness_ml.face_templates import pack_template_set, parse_photo_templates

log = logging.getLogger(__name__)

LORA_KIND = "lora"
CHECKPOINT_KIND = "checkpoint"
MODEL_FACES_KIND = "model-faces"


class TrainingObjects:
    def __init__(
        self, sealed: SealedObjects, store: ObjectStore, tenant: str, subject_id: str, training_id: str
    ) -> None:
        self.sealed = sealed
        self.store = store
        self.tenant = tenant
        self.subject_id = subject_id
        self.training_id = training_id
        self.lora_ref = ObjectRef(tenant, subject_id, lora_key(tenant, subject_id, training_id), LORA_KIND)
        self.faces_ref = ObjectRef(
            tenant, subject_id, model_faces_key(tenant, subject_id, training_id), MODEL_FACES_KIND
        )
        # Derived from the canonical key functions, so the layout is defined in one place only.
        self.prefix = posixpath.dirname(self.lora_ref.key) + "/"
        first = checkpoint_key(tenant, subject_id, training_id, 0)
        self.checkpoint_prefix = first[: first.rindex("-") + 1]

    def checkpoint_ref(self, step: int) -> ObjectRef:
        key = checkpoint_key(self.tenant, self.subject_id, self.training_id, step)
        return ObjectRef(self.tenant, self.subject_id, key, CHECKPOINT_KIND)

    # --- the LoRA ------------------------------------------------------------------------------------

    def lora_stored(self) -> bool:
        """Whether a LoRA (any version) exists: an earlier delivery got as far as storing it."""
        return any(found.key == self.lora_ref.key for found in self.store.list_versions(self.lora_ref.key))

    def put_lora(self, lora_safetensors: bytes) -> None:
        self.sealed.put(self.lora_ref, lora_safetensors)

    # --- face templates ------------------------------------------------------------------------------

    def read_photo_templates(self, photo_ids: list[str]) -> list[bytes]:
        """Ingest's templates of these photos (one batched decrypt); a photo without one is skipped."""
        refs = [
            ObjectRef(
                self.tenant, self.subject_id, face_template_key(self.tenant, self.subject_id, p), "face"
            )
            for p in photo_ids
        ]
        try:
            return self.sealed.get_many(refs)
        except ObjectMissing:
            pass  # one of them has none (a photo from before templates): read them one by one
        found = []
        for ref in refs:
            try:
                found.append(self.sealed.get(ref))
            except ObjectMissing:
                continue
        return found

    def seal_templates_of(self, photo_ids: list[str]) -> int:
        """Seals the templates of the photos this model is trained on beside it, under the person's key:
        the renderer's identity gate scores against them for the model's whole life, after the photos (and
        their own templates) are deleted; they are deleted with the model. Returns how many (0 when an earlier
        delivery sealed them already: the same photos give the same templates, and one version is kept)."""
        if any(found.key == self.faces_ref.key for found in self.store.list_versions(self.faces_ref.key)):
            return 0
        embeddings = parse_photo_templates(self.read_photo_templates(photo_ids))
        if len(embeddings):
            self.sealed.put(self.faces_ref, pack_template_set(embeddings))
        return len(embeddings)

    def read_faces(self) -> bytes:
        return self.sealed.get(self.faces_ref)

    # --- checkpoints ---------------------------------------------------------------------------------

    def checkpoint_steps(self) -> list[int]:
        """Steps of the stored checkpoints, newest first."""
        steps = set()
        for found in self.store.list_current(self.checkpoint_prefix):
            suffix = found.key.removeprefix(self.checkpoint_prefix)
            if suffix.isdigit():
                steps.add(int(suffix))
        return sorted(steps, reverse=True)

    def read_checkpoint(self, step: int) -> bytes:
        return self.sealed.get(self.checkpoint_ref(step))

    def put_checkpoint(self, step: int, data: bytes) -> None:
        self.sealed.put(self.checkpoint_ref(step), data)

    def prune_checkpoints(self, keep: int) -> None:
        """Deletes (every version of) all but the newest `keep` checkpoints."""
        for step in self.checkpoint_steps()[keep:]:
            self.store.delete_all_versions(self.checkpoint_ref(step).key)

    def delete_checkpoints(self) -> None:
        self.store.delete_all_versions(self.checkpoint_prefix)

    def delete_all(self) -> int:
        """Every version of every object of this training (the LoRA included); returns objects deleted."""
        objects, _ = self.store.delete_all_versions(self.prefix)
        return objects
