"""Instant mode in the render worker: the subject's one accepted photo, decrypted in memory, turned into the
identity adapter's embedding and its face template, for one job only.

Nothing of it is cached or stored: the photo's bytes and pixels, its embedding and its template live as
long as the job's call stack, so there is nothing to export, delete or purge beyond the photo itself (which
ingest and retention already own). The objects are named from the job's tenant, subject and photo id, so a
job can only ever read a photo of its own subject, under that subject's key.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import PIL.Image

from likeness.jobs import PermanentJobFailure
from likeness.object_names import face_template_key, photo_key
from likeness.sealed import ObjectRef, SealedObjects
from likeness.store import ObjectMissing
from likeness.v1 import jobs_pb2
from likeness_ml.base_model import BasePipeline
from likeness_ml.identity_adapter import FaceEmbeds, IdentityAdapter, face_embeds, load_identity_adapter
from renderer.identity import FloatArray, parse_templates

#: The subject phrase of a render without a trained model (no LoRA token to name the person by: the
#: adapter carries the likeness).
INSTANT_PHRASE = "photo of a person"
#: Object kinds of ingest's objects (part of their envelopes' context).
PHOTO_KIND = "photo"
FACE_KIND = "face"


@dataclass(frozen=True)
class InstantMaterial:
    """What one instant job renders from: the photo's embedding, and its face template for the identity
    gate (empty when ingest kept none)."""

    embeds: FaceEmbeds
    templates: FloatArray


class InstantMode:
    """The identity adapter loaded beside the resident pipeline, and the per-job material it needs."""

    def __init__(self, pipe: BasePipeline, adapter_dir: Path, scale: float) -> None:
        self.pipe = pipe
        self.adapter: IdentityAdapter = load_identity_adapter(pipe, adapter_dir)
        self.scale = scale

    def material(self, sealed: SealedObjects, job: jobs_pb2.RenderJob) -> InstantMaterial:
        """Decrypts the job's photo (and its template), computes the embedding; all in memory (runs in a
        worker thread)."""
        photo_ref = ObjectRef(
            job.tenant, job.subject_id, photo_key(job.tenant, job.subject_id, job.photo_id), PHOTO_KIND
        )
        template_ref = ObjectRef(
            job.tenant,
            job.subject_id,
            face_template_key(job.tenant, job.subject_id, job.photo_id),
            FACE_KIND,
        )
        try:
            photo = sealed.get(photo_ref)
        except ObjectMissing as missing:
            raise PermanentJobFailure("the photo of the instant render is not available") from missing
        try:
            templates = parse_templates([sealed.get(template_ref)])
        except ObjectMissing:
            templates = parse_templates([])
        # Ingest's own re-encoded crop (PNG only, authenticated by its envelope): decoded like the trainer's.
        with PIL.Image.open(io.BytesIO(photo), formats=["PNG"]) as image:
            pixels = image.convert("RGB")
        del photo
        return InstantMaterial(face_embeds(self.pipe, self.adapter, pixels), templates)
