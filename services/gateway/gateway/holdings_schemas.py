"""The JSON body of the subject summary (`GET /v1/subjects/{id}/summary`) and the deletion dates of the
export, converted from retention's `DescribeHoldings` (`retention.holdings` computes them)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from gateway import consent_schemas
from gateway.convert import timestamp
from gateway.schemas import WHEN
from likeness.v1 import retention_pb2

Category = Literal[
    "photos", "face_templates", "models", "renders", "images", "consents", "processing_log", "other"
]
DeletionRule = Literal[
    "photos_days",
    "photos_deleted_after_training",
    "models_days",
    "renders_days",
    "hard_cap",
    "inactivity",
    "audit_retention",
]
RULES: tuple[str, ...] = get_args(DeletionRule)


class HeldItem(BaseModel):
    id: str = Field(
        description="The photo, training, render, image or consent grant id (`log`: the processing log); a "
        "face template has its photo's id, or its training's for the templates sealed beside a model"
    )
    parent_id: str | None = Field(
        description="What it belongs to: an image's render; the training of a model's face templates"
    )
    bytes: int = Field(description="Stored bytes, every version counted (0: held as a record, not a file)")
    versions: int = Field(description="Stored versions (the processing log: its records)")
    stored_at: datetime | None
    delete_by: datetime | None = Field(description="When it is deleted at the latest")
    deletion_rule: DeletionRule | None = Field(
        description="Why that date: `photos_days`, `photos_deleted_after_training`, `models_days`, "
        "`renders_days` (the retention schedule), `hard_cap` or `inactivity` (the whole subject's deadline), "
        "`audit_retention` (the processing log outlives the data; it holds no personal content)"
    )


class HeldCategory(BaseModel):
    name: Category
    count: int
    bytes: int
    items: list[HeldItem]


class SubjectSummary(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject_id": "sub_01jbz3k7q8m2x4v6n9p0r5t7wy",
                    "categories": [
                        {
                            "name": "photos",
                            "count": 1,
                            "bytes": 48213,
                            "items": [
                                {
                                    "id": "pho_01jbz3k7q8m2x4v6n9p0r5t7wy",
                                    "parent_id": None,
                                    "bytes": 48213,
                                    "versions": 1,
                                    "stored_at": WHEN,
                                    "delete_by": "2025-02-01T12:00:00Z",
                                    "deletion_rule": "photos_days",
                                }
                            ],
                        }
                    ],
                    "live_grants": [],
                    "last_access_at": WHEN,
                    "last_access_source": "activity",
                    "delete_by": "2027-12-31T12:00:00Z",
                    "deletion_rule": "hard_cap",
                    "described_at": WHEN,
                }
            ]
        }
    )
    subject_id: str
    categories: list[HeldCategory] = Field(
        description="photos, face_templates, models, renders, images, consents, processing_log (when kept)"
    )
    live_grants: list[consent_schemas.ConsentGrant] = Field(description="The consent grants in force now")
    last_access_at: datetime | None
    last_access_source: Literal["processing_log", "activity"] | None = Field(
        description="`processing_log`: the newest record of the person's processing log; `activity`: the "
        "subject's last activity (uploads, trainings, renders)"
    )
    delete_by: datetime | None = Field(description="The whole subject is erased at the latest then")
    deletion_rule: Literal["hard_cap", "inactivity"] | None
    described_at: datetime | None


def _rule(value: str) -> DeletionRule | None:
    return value if value in RULES else None  # type: ignore[return-value]


def item(value: retention_pb2.HeldItem) -> HeldItem:
    return HeldItem(
        id=value.id,
        parent_id=value.parent_id or None,
        bytes=value.bytes,
        versions=value.versions,
        stored_at=timestamp(value, "stored_at"),
        delete_by=timestamp(value, "delete_by"),
        deletion_rule=_rule(value.deletion_rule),
    )


def summary(value: retention_pb2.DescribeHoldingsResponse, now: datetime) -> SubjectSummary:
    return SubjectSummary(
        subject_id=value.subject_id,
        categories=[
            HeldCategory(
                name=category.name,
                count=category.count,
                bytes=category.bytes,
                items=[item(held) for held in category.items],
            )
            for category in value.categories
        ],
        live_grants=[consent_schemas.grant(grant, now) for grant in value.live_grants],
        last_access_at=timestamp(value, "last_access_at"),
        last_access_source=value.last_access_source or None,
        delete_by=timestamp(value, "delete_by"),
        deletion_rule=value.deletion_rule or None,
        described_at=timestamp(value, "described_at"),
    )
