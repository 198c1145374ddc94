"""Object names (S3 keys) of a subject's data: `t/<tenant>/s/<subject>/...` (one prefix per person)."""

from __future__ import annotations


def subject_prefix(tenant: str, subject_id: str) -> str:
    return f"t/{tenant}/s/{subject_id}/"


def photo_key(tenant: str, subject_id: str, photo_id: str) -> str:
    return f"{subject_prefix(tenant, subject_id)}photos/{photo_id}"


def face_template_key(tenant: str, subject_id: str, photo_id: str) -> str:
    return f"{subject_prefix(tenant, subject_id)}faces/{photo_id}"


def lora_key(tenant: str, subject_id: str, training_id: str) -> str:
    return f"{subject_prefix(tenant, subject_id)}models/{training_id}/lora"


def model_faces_key(tenant: str, subject_id: str, training_id: str) -> str:
    """The face templates a model was trained on, sealed beside it: the renderer's identity reference for
    the model's whole life (the photos' own templates expire with the photos), deleted with the model."""
    return f"{subject_prefix(tenant, subject_id)}models/{training_id}/faces"


def checkpoint_key(tenant: str, subject_id: str, training_id: str, step: int) -> str:
    return f"{subject_prefix(tenant, subject_id)}models/{training_id}/ckpt-{step:08d}"


def render_image_key(tenant: str, subject_id: str, render_id: str, image_id: str) -> str:
    return f"{subject_prefix(tenant, subject_id)}renders/{render_id}/{image_id}"
