"""The JSON bodies of per-item deletion and rectification (`gateway.routes.deletions`).

Every deletion answer says plainly that it is not a crypto-erase: the person's key still opens a restored
backup of the item until erasure destroys the key or the backup expires (`backups_expire_within_days`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.schemas import PHOTO_ID, RENDER_ID, REQUEST, SUBJECT_ID, TRAINING_ID, Render

#: What every deletion answer says, in words a person reads.
NOT_A_CRYPTO_ERASE_NOTICE = (
    "Every stored version of this item is deleted. This is not a crypto-erase: your key still opens a "
    "restored backup of it until your key is destroyed (erasing the whole subject) or the backup expires."
)

ItemKind = Literal["photo", "model", "render", "image"]


class TrainedModel(BaseModel):
    """A model (training) that learned from a deleted photo: its own templates and weights outlive the
    photo until it is deleted too."""

    training_id: str
    deleted: bool = Field(description="Deleted with the photo (`with_models=true`)")
    delete_url: str | None = Field(description="`DELETE` this to delete the model too; null once deleted")


class ItemDeletion(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "photo",
                    "id": PHOTO_ID,
                    "subject_id": SUBJECT_ID,
                    "versions_deleted": 2,
                    "crypto_erase": False,
                    "backups_expire_within_days": 7,
                    "notice": NOT_A_CRYPTO_ERASE_NOTICE,
                    "models_trained_on_it": [
                        {
                            "training_id": TRAINING_ID,
                            "deleted": False,
                            "delete_url": f"/v1/trainings/{TRAINING_ID}",
                        }
                    ],
                }
            ]
        }
    )
    kind: ItemKind
    id: str
    subject_id: str
    render_id: str | None = Field(default=None, description=f"An image's render (e.g. {RENDER_ID})")
    versions_deleted: int = Field(description="Stored versions removed by this call (0 on a retry)")
    crypto_erase: Literal[False] = Field(
        default=False, description="Always false: see `notice` and `backups_expire_within_days`"
    )
    backups_expire_within_days: int = Field(
        description="Backups that may still hold the item (readable with your key) expire within this"
    )
    notice: str = NOT_A_CRYPTO_ERASE_NOTICE
    models_trained_on_it: list[TrainedModel] | None = Field(
        default=None, description="A photo's answer: the models trained on it (each deleted, or a link to)"
    )
    render: Render | None = Field(default=None, description="An image's answer: its render without it")


class SubjectRectification(BaseModel):
    """What a person (or their tenant) may correct in the subject's record: the tenant's reference."""

    model_config = ConfigDict(**REQUEST, json_schema_extra={"examples": [{"external_ref": "user-4712"}]})
    external_ref: str | None = Field(
        min_length=1,
        max_length=256,
        description="Your corrected reference for the person (stored only as a keyed HMAC); null forgets it",
    )
