"""The v1 API's bodies as typed, immutable models.

Unknown fields are ignored and enums are plain strings, so a newer gateway (a new field, a new status)
does not break an older client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

#: Job statuses after which nothing changes any more.
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Reason(Model):
    code: str
    message: str


class Progress(Model):
    step: int = 0
    total_steps: int = 0

    @property
    def fraction(self) -> float:
        """0.0 to 1.0 (0.0 while the total is unknown)."""
        return min(1.0, self.step / self.total_steps) if self.total_steps > 0 else 0.0


class Consent(Model):
    purpose: str
    policy_version: str
    given_at: datetime | None = None


class Retention(Model):
    photos_days: int = 0
    photos_deleted_after_training: bool = False
    models_days: int = 0
    renders_days: int = 0
    inactivity_days: int = 0


class Subject(Model):
    id: str
    status: str
    created_at: datetime | None = None
    consent: Consent | None = None
    retention: Retention | None = None
    delete_by: datetime | None = None


class Photo(Model):
    id: str
    status: str
    reasons: list[Reason] = Field(default_factory=list)
    width: int | None = None
    height: int | None = None
    scores: dict[str, float] | None = None
    created_at: datetime | None = None
    #: Only in upload results: the name the file was sent under.
    filename: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


class UploadResult(Model):
    photos: list[Photo]


class JobAccepted(Model):
    id: str
    status: str


class Training(Model):
    id: str
    subject_id: str
    status: str
    progress: Progress = Field(default_factory=Progress)
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


class ImageQuality(Model):
    """What the output gates found on one image (identity: faces and distance; safety: the classifier)."""

    faces: int | None = None
    identity_distance: float | None = None
    rerolls: int = 0
    passed: bool = True
    safety_scores: dict[str, float] = Field(default_factory=dict)
    safety_flags: list[str] = Field(default_factory=list)


class RenderedImage(Model):
    id: str
    style: str
    seed: int
    url: str
    quality: ImageQuality | None = None
    #: SHA-256 of the curated prompt it came from (its style and catalog choices; names no one).
    prompt_sha256: str | None = None


class RenderQuality(Model):
    """What the output gates did over a render: images dropped by reason, flags, rejections."""

    identity_gate: str | None = None
    safety_gate: str | None = None
    images_requested: int = 0
    rerolls: int = 0
    failures: int = 0
    templates: int = 0
    dropped: dict[str, int] = Field(default_factory=dict)
    safety_flags: dict[str, int] = Field(default_factory=dict)
    rejected: int = 0
    note: str | None = None


class Render(Model):
    id: str
    subject_id: str
    #: None for an instant render from a photo alone.
    training_id: str | None = None
    instant: bool = False
    status: str
    styles: list[str] = Field(default_factory=list)
    images_per_style: int = 0
    progress: Progress = Field(default_factory=Progress)
    images: list[RenderedImage] = Field(default_factory=list)
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    #: The team look the render followed, and the catalog choices it put instead of the styles' own.
    team_look_id: str | None = None
    background: str | None = None
    outfit: str | None = None
    lighting: str | None = None
    quality: RenderQuality | None = None
    #: The queue it waited in: "interactive" or "bulk".
    priority: str = "interactive"

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


class Style(Model):
    id: str
    name: str
    description: str = ""


class Background(Model):
    """A backdrop a render can choose or a team look can pin."""

    id: str
    name: str
    #: The words it puts into the prompt; `preview` is the sentence to show people.
    description: str = ""
    preview: str = ""


class CatalogOption(Model):
    """An outfit or a lighting set-up a render can choose."""

    id: str
    name: str
    description: str = ""
    preview: str = ""


class Catalog(Model):
    """The curated styles a render can use, and the backgrounds, outfits and lighting it can choose."""

    styles: list[Style]
    backgrounds: list[Background] = Field(default_factory=list)
    outfits: list[CatalogOption] = Field(default_factory=list)
    lighting_setups: list[CatalogOption] = Field(default_factory=list)


class RenderChoices(Model):
    """Catalog ids (`get_catalog`) a render puts in place of every style's own; None keeps the style's (or
    its team look's) own."""

    background: str | None = None
    outfit: str | None = None
    lighting: str | None = None


class TeamLook(Model):
    """A tenant's pinned style, background and seed policy, so a team's headshots match."""

    id: str
    name: str
    style: str
    background: str
    #: The outfit and lighting it fixes for everyone (None: each render chooses).
    outfit: str | None = None
    lighting: str | None = None
    #: `fixed` (every render of the look uses `seed`) or `per_render`.
    seed_policy: str
    seed: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


class TeamLookSpec(Model):
    """What `put_team_look` sends: a style and a background of the catalog (`get_catalog`), and `fixed`
    seeds (every render uses `seed`; absent: the gateway picks one) or `per_render` ones."""

    name: str
    style: str
    background: str
    seed_policy: str = "fixed"
    seed: int | None = None
    #: Optional catalog outfit and lighting every member gets.
    outfit: str | None = None
    lighting: str | None = None


class TeamLookList(Model):
    looks: list[TeamLook]


class ErasureAccepted(Model):
    erasure_id: str
    status: str
    #: Given once, by the call that started the erasure, and stored nowhere: keep it to check that the
    #: receipt names the subject (`likeness.receipts.names_subject`).
    receipt_salt: str | None = None


class Erasure(Model):
    id: str
    tenant: str
    subject_hmac: str
    status: str
    cause: str = ""
    key_name: str = ""
    requested_at: datetime | None = None
    key_destroyed_at: datetime | None = None
    completed_at: datetime | None = None
    objects_deleted: int = 0
    bytes_deleted: int = 0
    records_deleted: int = 0
    events_purged: int = 0
    backups_expire_by: datetime | None = None
    last_error: str | None = None
    attempts: int = 0


class ReceiptSignature(Model):
    alg: str
    kid: str
    #: base64url Ed25519 signature of the canonical JSON of the receipt's facts.
    value: str


class ErasureReceipt(Model):
    """The signed receipt of a completed erasure: `receipt` holds the facts (the subject only as a keyed
    HMAC); verify it against `get_receipt_keys()` (e.g. with `likeness erasures receipt`)."""

    receipt: dict[str, Any]
    signature: ReceiptSignature


class ReceiptKeys(Model):
    """The JWK set (Ed25519 public keys) that verifies erasure receipts, as the gateway publishes it."""

    keys: list[dict[str, Any]]


class RetentionPolicy(Model):
    """The tenant's retention schedule: what subjects opened from now on get, and the same in words."""

    schedule: Retention
    #: False: the tenant has set no schedule of its own; these are the service defaults.
    tenant_specific: bool
    #: No subject is kept longer than this, whatever the schedule.
    hard_cap_days: int
    #: Vault snapshots keep a destroyed key this long.
    backups_retention_days: int
    text: str


class Health(Model):
    status: str


class Readiness(Model):
    status: str
    #: Each backend (and NATS) and whether it is serving.
    backends: dict[str, bool] = Field(default_factory=dict)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list; pass `next_cursor` back as `cursor` for the next (None: this was the last)."""

    items: list[T]
    next_cursor: str | None
