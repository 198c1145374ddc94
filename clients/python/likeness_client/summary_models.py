"""The subject summary of the v1 API (`GET /v1/subjects/{id}/summary`) as typed models: what is held about
a person, per category, with each item's deletion date and the rule that sets it."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from likeness_client.consent_models import ConsentGrant
from likeness_client.models import Model


class HeldItem(Model):
    #: A photo, training, render, image or grant id ("log": the processing log).
    id: str
    #: An image's render; the training of a model's face templates.
    parent_id: str | None = None
    bytes: int = 0
    versions: int = 0
    stored_at: datetime | None = None
    #: When it is deleted at the latest, and the rule that says so (e.g. "photos_days", "hard_cap").
    delete_by: datetime | None = None
    deletion_rule: str | None = None


class HeldCategory(Model):
    #: "photos", "face_templates", "models", "renders", "images", "consents", "processing_log".
    name: str
    count: int = 0
    bytes: int = 0
    items: list[HeldItem] = Field(default_factory=list)


class SubjectSummary(Model):
    subject_id: str
    categories: list[HeldCategory] = Field(default_factory=list)
    live_grants: list[ConsentGrant] = Field(default_factory=list)
    last_access_at: datetime | None = None
    #: "processing_log" (the newest record of the person's log) or "activity" (their last activity).
    last_access_source: str | None = None
    delete_by: datetime | None = None
    deletion_rule: str | None = None
    described_at: datetime | None = None

    def category(self, name: str) -> HeldCategory:
        """The category of that name (empty when none is held)."""
        return next((found for found in self.categories if found.name == name), HeldCategory(name=name))
