"""Per-item deletion in the v1 API (`DELETE` of a photo, a training, a render, an image) as typed models.

A deletion removes every stored version of the item; it is not a crypto-erase (`crypto_erase` is always
false): the person's key still opens a restored backup of it until the key is destroyed or the backup
expires, within `backups_expire_within_days`.
"""

from __future__ import annotations

from typing import Literal

from likeness_client.models import Model, Render


class TrainedModel(Model):
    """A model trained on a deleted photo: deleted with it, or a link to delete it (`DELETE delete_url`)."""

    training_id: str
    deleted: bool
    delete_url: str | None = None


class ItemDeletion(Model):
    kind: Literal["photo", "model", "render", "image"]
    id: str
    subject_id: str
    #: An image's render.
    render_id: str | None = None
    #: Stored versions removed by this call (0 on a retry that found nothing left).
    versions_deleted: int
    crypto_erase: bool = False
    backups_expire_within_days: int
    #: In words: what was deleted and why it is not a crypto-erase.
    notice: str
    #: A photo's answer: the models trained on it.
    models_trained_on_it: list[TrainedModel] | None = None
    #: An image's answer: its render without it.
    render: Render | None = None
