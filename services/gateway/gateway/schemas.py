"""The v1 API's JSON bodies (snake_case; timestamps ISO 8601 UTC; enums lower-case), with examples."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

JobStatus = Literal["unspecified", "queued", "running", "succeeded", "failed", "cancelled"]
SubjectStatus = Literal["unspecified", "active", "erasing", "erased"]
PhotoStatus = Literal["unspecified", "accepted", "rejected"]
ErasureStatus = Literal["unspecified", "pending", "key_destroyed", "completed"]
#: The consent purposes (`likeness.consent.PURPOSES`).
Purpose = Literal["headshots", "team_look", "instant"]
#: Which of the tenant's queues a render waits in: workers take a tenant's interactive renders first.
RenderPriority = Literal["interactive", "bulk"]

SUBJECT_ID = "sub_01jbz3k7q8m2x4v6n9p0r5t7wy"
PHOTO_ID = "pho_01jbz3m2a4c6e8g0j2k4m6p8rt"
TRAINING_ID = "trn_01jbz3p5b7d9f1h3k5m7q9s1vw"
RENDER_ID = "ren_01jbz3r8c0e2g4j6m8p0s2v4xy"
IMAGE_ID = "img_01jbz3t1d3f5h7k9n1q3t5w7za"
ERASURE_ID = "era_01jbz3w4e6g8j0m2p4r6v8y0bc"
WHEN = "2025-01-02T03:04:05Z"
NEXT_CURSOR = "Pass as `cursor` for the next page; null on the last page"
#: Catalog ids (styles, backgrounds), as the renderer's catalog defines them.
CATALOG_ID_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
#: A team look's id: the tenant's own, 1-40 lower-case letters, digits and inner dashes.
LOOK_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$"


def _example(**values: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [values]})


class ErrorBody(BaseModel):
    """An answer may add fields beside these: `quota_exceeded` names the refusing quota in `quota`."""

    code: str = Field(description="Stable machine-readable code", examples=["not_found"])
    message: str = Field(description="A sentence for humans; may change", examples=["No such resource."])
    request_id: str | None = Field(
        default=None,
        description="The request's id (also in the `X-Request-Id` header): quote it to support",
        examples=["4bf92f3577b34da6a3ce929d0e0e4736"],
    )


class ErrorResponse(BaseModel):
    model_config = _example(
        error={
            "code": "subject_erased",
            "message": "This subject has been erased.",
            "request_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        }
    )
    error: ErrorBody


class Reason(BaseModel):
    code: str
    message: str


class Progress(BaseModel):
    step: int
    total_steps: int


# Subjects


def _whole_number(value: Any) -> Any:
    """JSON Schema's integers include `1.0`; strict pydantic takes only `1`. Anything else (a bool, a
    string, `1.5`) goes on to the strict check unchanged, and is refused there."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An integer of a request body: a JSON number without a fraction, not `true`, not `"7"`. Each alias puts
#: its bounds next to `int`, before this validator, so the schema states them as `minimum`/`maximum`.
_WHOLE_NUMBER = BeforeValidator(_whole_number)
Steps = Annotated[int, Field(ge=1, le=10_000), _WHOLE_NUMBER]
ImagesPerStyle = Annotated[int, Field(ge=1, le=8), _WHOLE_NUMBER]
#: 2^53 - 1: the largest integer every JSON reader (JavaScript's numbers too) holds exactly.
RenderSeed = Annotated[int, Field(ge=0, le=2**53 - 1), _WHOLE_NUMBER]
LookSeed = Annotated[int, Field(ge=0, le=2**31 - 1), _WHOLE_NUMBER]
Days = Annotated[int, Field(ge=0, le=36_500), _WHOLE_NUMBER]

#: Request bodies take JSON types as the schema states them: no `"7"` for 7, no `0` for false (pydantic's lax
#: coercions would accept what the contract refuses), and no field the schema does not name.
REQUEST = ConfigDict(extra="forbid", strict=True)


#: "Has a character that is not blank": what the services require of names and consent fields (they
#: strip them). Blank is Python's whitespace and ECMAScript's `\s` together, spelled out, so the pattern
#: means the same to a client's validator, to the schema's and to this one.
NOT_BLANK_PATTERN = (
    r"[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
)


class ConsentIn(BaseModel):
    model_config = REQUEST
    #: One of the fixed purposes (`likeness.consent.PURPOSES`): it becomes the subject's first grant.
    purpose: Purpose = Field(
        description="`headshots` (train and render), `team_look` (renders in a team look), `instant` "
        "(one-photo renders without training)"
    )
    policy_version: str = Field(min_length=1, max_length=64, pattern=NOT_BLANK_PATTERN, examples=["2025-01"])


class CreateSubjectRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "external_ref": "user-4711",
                    "consent": {"purpose": "headshots", "policy_version": "2025-01"},
                }
            ]
        },
    )
    external_ref: str | None = Field(
        default=None, max_length=256, description="Your own reference; stored only as a keyed HMAC"
    )
    consent: ConsentIn


class Consent(BaseModel):
    purpose: str
    policy_version: str
    given_at: datetime | None


class Retention(BaseModel):
    photos_days: int = Field(description="Days photos are kept (0: the tenant default)")
    photos_deleted_after_training: bool
    models_days: int
    renders_days: int
    inactivity_days: int


class Subject(BaseModel):
    model_config = _example(
        id=SUBJECT_ID,
        status="active",
        created_at=WHEN,
        consent={"purpose": "headshots", "policy_version": "2025-01", "given_at": WHEN},
        retention={
            "photos_days": 30,
            "photos_deleted_after_training": True,
            "models_days": 90,
            "renders_days": 90,
            "inactivity_days": 180,
        },
        delete_by="2025-07-01T03:04:05Z",
    )
    id: str
    status: SubjectStatus
    created_at: datetime | None
    consent: Consent | None
    retention: Retention
    delete_by: datetime | None = Field(description="Hard deadline for the whole subject")


# Photos


class Photo(BaseModel):
    model_config = _example(
        id=PHOTO_ID,
        status="accepted",
        reasons=[],
        width=1024,
        height=1024,
        scores={"sharpness": 0.91, "exposure": 0.84},
        created_at=WHEN,
    )
    id: str
    status: PhotoStatus
    reasons: list[Reason]
    width: int | None = Field(description="Size of the stored crop (accepted photos only)")
    height: int | None
    scores: dict[str, float] | None = Field(description="Quality scores to coach the person")
    created_at: datetime | None


class UploadedPhoto(Photo):
    model_config = _example(
        id=PHOTO_ID,
        filename="selfie-1.jpg",
        status="rejected",
        reasons=[{"code": "no_face", "message": "No face was found in this photo."}],
        width=None,
        height=None,
        scores=None,
        created_at=WHEN,
    )
    filename: str | None = Field(description="As sent by the client; echoed here only, never stored")


class UploadResult(BaseModel):
    photos: list[UploadedPhoto]


class RejectedUpload(BaseModel):
    """422: no photo of the upload was usable; the error names why, the photos say it per file."""

    error: ErrorBody
    photos: list[UploadedPhoto]


class PhotoList(BaseModel):
    photos: list[Photo] = Field(description="Oldest first (upload order)")
    next_cursor: str | None = Field(default=None, description=NEXT_CURSOR)


class SubjectList(BaseModel):
    subjects: list[Subject] = Field(description="Newest first; erased subjects are not listed")
    next_cursor: str | None = Field(default=None, description=NEXT_CURSOR)


# The audit trail (issue 16, item 2)


class AuditEntry(BaseModel):
    """One access to a person's data (or a tenant's action), as the service holding the data recorded it."""

    sequence: int = Field(description="Position in the audit trail (pages resume after it)")
    action: str = Field(description="What was done, e.g. `image.downloaded`", examples=["photos.decrypted"])
    at: datetime | None = Field(description="When")
    principal: str = Field(
        description="Who acted, never naming a person: `subject` (the person's own token), `tenant` or "
        "`tenant:<client>` (a tenant back end), `service:<identity>` (background work)",
        examples=["service:trainer-worker"],
    )
    purpose: str | None = Field(
        description="Why: a consent purpose (`headshots`, `team_look`, `instant`) or `export`, `erasure`, "
        "`retention`, `review`, `rectification`, `deletion`, `access`",
        examples=["headshots"],
    )
    outcome: str = Field(description="How it ended, e.g. `ok`, `denied`", examples=["ok"])
    resource_id: str | None = Field(description="The item concerned (a photo, training, render, image...)")
    notice: str | None = Field(
        description="A short word to read with the record, e.g. `not_a_crypto_erase`", examples=[None]
    )
    actor: str = Field(
        description="The service that holds the data and wrote the record", examples=["trainer"]
    )
    subject_pseudonym: str | None = Field(
        default=None,
        description="The person's pseudonym (a keyed HMAC; tenant trail only): the same for every record "
        "of one person, never their id",
    )


class ProcessingLog(BaseModel):
    entries: list[AuditEntry] = Field(description="Oldest first")
    next_cursor: str | None = Field(default=None, description=NEXT_CURSOR)


# Quotas (issue 18)


class JobUsage(BaseModel):
    in_flight: int = Field(description="Jobs of this kind queued or running now")
    limit: int = Field(description="The most the tenant may have queued or running at once")


class GpuUsage(BaseModel):
    day: str = Field(description="The UTC day, `YYYYMMDD`", examples=["20261205"])
    seconds: float = Field(description="Seconds GPU workers held the tenant's jobs this UTC day")
    limit: float = Field(description="GPU-seconds the tenant may use per UTC day")
    resets_in_seconds: int = Field(description="Seconds until the next UTC day, when `seconds` starts over")


class Usage(BaseModel):
    trainings: JobUsage
    renders: JobUsage
    gpu_seconds: GpuUsage
    max_training_steps: int = Field(description="The most steps a training may ask for")


# Trainings and renders


class CreateTrainingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"steps": 800}]})
    steps: Steps | None = Field(default=None, description="Absent: the preset's default")


class JobAccepted(BaseModel):
    model_config = _example(id=TRAINING_ID, status="queued")
    id: str
    status: JobStatus


class Training(BaseModel):
    model_config = _example(
        id=TRAINING_ID,
        subject_id=SUBJECT_ID,
        status="running",
        progress={"step": 120, "total_steps": 800},
        error=None,
        created_at=WHEN,
        updated_at=WHEN,
    )
    id: str
    subject_id: str
    status: JobStatus
    progress: Progress
    error: str | None
    created_at: datetime | None
    updated_at: datetime | None


class CreateRenderRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"training_id": TRAINING_ID, "styles": ["corporate"], "images_per_style": 2, "seed": 7}
            ],
            # What `_styles_or_look` checks, said in the schema: a team look or at least one style, and a
            # training or instant mode.
            "allOf": [
                {
                    "anyOf": [
                        {"required": ["team_look_id"], "properties": {"team_look_id": {"type": "string"}}},
                        {"required": ["styles"], "properties": {"styles": {"minItems": 1}}},
                    ]
                },
                {
                    "anyOf": [
                        {
                            "required": ["training_id"],
                            "properties": {"training_id": {"type": "string", "minLength": 1}},
                        },
                        {"required": ["instant"], "properties": {"instant": {"const": True}}},
                    ]
                },
            ],
        },
    )
    training_id: str | None = Field(
        default=None,
        max_length=64,
        description="A succeeded training of the subject; required unless `instant` (then optional: "
        "given, its model and the photo combine)",
    )
    instant: bool = Field(
        default=False,
        description="Instant mode: the likeness from the subject's latest accepted photo through the "
        "identity adapter, no training needed; needs a live `instant` consent grant",
    )
    styles: list[Annotated[str, Field(pattern=CATALOG_ID_PATTERN)]] = Field(
        default_factory=list,
        max_length=16,
        description="Style ids from GET /v1/styles (at least one, unless a team look gives the style)",
    )
    images_per_style: ImagesPerStyle = Field(default=2)
    seed: RenderSeed | None = Field(default=None, description="Absent: random")
    team_look_id: str | None = Field(
        default=None,
        pattern=LOOK_ID_PATTERN,
        description="A team look of the tenant: it pins style, background and (fixed looks) the seed; "
        "`styles` may then be absent or name the look's style only, and a fixed look's seed may not change",
    )
    background: str | None = Field(
        default=None,
        pattern=CATALOG_ID_PATTERN,
        description="A background id from `GET /v1/styles` (`backgrounds`) in place of every style's own; "
        "absent: the style's own (or the team look's)",
    )
    outfit: str | None = Field(
        default=None,
        pattern=CATALOG_ID_PATTERN,
        description="An outfit id from `GET /v1/styles` (`outfits`) in place of every style's own",
    )
    lighting: str | None = Field(
        default=None,
        pattern=CATALOG_ID_PATTERN,
        description="A lighting id from `GET /v1/styles` (`lighting_setups`) in place of every style's own",
    )
    priority: RenderPriority | None = Field(
        default=None,
        description="`interactive` (someone is waiting) or `bulk` (a batch): within the tenant, workers take "
        "interactive renders first; tenants share the workers in turn. Absent: `bulk` in a team look, else "
        "`interactive`",
    )

    @model_validator(mode="after")
    def _styles_or_look(self) -> CreateRenderRequest:
        if not self.styles and not self.team_look_id:
            raise ValueError("give at least one style, or a team_look_id")
        if not self.training_id and not self.instant:
            raise ValueError("give a training_id, or instant: true")
        return self


GateMode = Literal["off", "score", "enforce"]


class ImageQuality(BaseModel):
    """What the output gates found on one image."""

    faces: int | None = Field(default=None, description="Faces the identity gate found (absent with it off)")
    identity_distance: float | None = Field(
        default=None,
        description="dlib distance of the face to the person's templates (under 0.6: the same person)",
    )
    rerolls: int = Field(description="Times the image was rendered again before it passed")
    passed: bool = Field(description="Whether it passed every gate (under `score` a kept image may not have)")
    safety_scores: dict[str, float] = Field(
        default_factory=dict, description="The safety classifier's probability of each watched label"
    )
    safety_flags: list[str] = Field(default_factory=list, description="The labels it flagged the image for")


class RenderedImage(BaseModel):
    id: str
    style: str
    seed: int
    url: str = Field(examples=[f"/v1/renders/{RENDER_ID}/images/{IMAGE_ID}"])
    quality: ImageQuality | None = Field(default=None, description="The output gates' scores of this image")
    prompt_sha256: str | None = Field(
        default=None,
        description="SHA-256 of the curated prompt it came from (style and catalog choices; names no one)",
    )


class RenderQuality(BaseModel):
    """What the output gates did over the whole render."""

    identity_gate: GateMode | None = Field(default=None, description="The identity gate's mode")
    safety_gate: GateMode | None = Field(default=None, description="The safety classifier's gate mode")
    images_requested: int
    rerolls: int
    failures: int = Field(description="Images that failed a gate (dropped under `enforce`)")
    templates: int = Field(description="Face templates of the person the identity gate scored against")
    dropped: dict[str, int] = Field(
        default_factory=dict, description='Images dropped, by reason: "identity" or "unsafe:<label>"'
    )
    safety_flags: dict[str, int] = Field(
        default_factory=dict, description="Delivered images the safety classifier flagged, by label"
    )
    rejected: int = Field(default=0, description="Images the person rejected (deleted) since")
    note: str | None = None


class Render(BaseModel):
    model_config = _example(
        id=RENDER_ID,
        subject_id=SUBJECT_ID,
        training_id=TRAINING_ID,
        status="succeeded",
        styles=["corporate"],
        images_per_style=1,
        progress={"step": 1, "total_steps": 1},
        images=[
            {
                "id": IMAGE_ID,
                "style": "corporate",
                "seed": 7,
                "url": f"/v1/renders/{RENDER_ID}/images/{IMAGE_ID}",
            }
        ],
        error=None,
        created_at=WHEN,
        updated_at=WHEN,
    )
    id: str
    subject_id: str
    training_id: str | None = Field(description="The training whose model it used (none: instant only)")
    instant: bool = Field(default=False, description="Whether the identity adapter conditioned it on a photo")
    status: JobStatus
    styles: list[str]
    images_per_style: int
    progress: Progress
    images: list[RenderedImage]
    error: str | None
    created_at: datetime | None
    updated_at: datetime | None
    team_look_id: str | None = Field(default=None, description="The team look the render followed")
    background: str | None = Field(default=None, description="A background that replaced the styles' own")
    outfit: str | None = Field(default=None, description="An outfit that replaced the styles' own")
    lighting: str | None = Field(default=None, description="A lighting set-up that replaced the styles' own")
    quality: RenderQuality | None = Field(default=None, description="The output gates' account")
    priority: RenderPriority = Field(default="interactive", description="The queue it waited in")


class TrainingList(BaseModel):
    trainings: list[Training] = Field(description="Newest first")
    next_cursor: str | None = Field(default=None, description=NEXT_CURSOR)


class RenderList(BaseModel):
    renders: list[Render] = Field(description="Newest first")
    next_cursor: str | None = Field(default=None, description=NEXT_CURSOR)


class Style(BaseModel):
    id: str
    name: str
    description: str


class Background(BaseModel):
    id: str
    name: str
    description: str = Field(description="The words it puts into the prompt")
    preview: str = Field(default="", description="A sentence for the people choosing it")


class CatalogOption(BaseModel):
    """An outfit or a lighting set-up."""

    id: str
    name: str
    description: str = Field(description="The words it puts into the prompt")
    preview: str = Field(description="A sentence for the people choosing it")


class StyleList(BaseModel):
    model_config = _example(
        styles=[{"id": "corporate", "name": "Corporate", "description": "Neutral backdrop, business attire"}],
        backgrounds=[
            {
                "id": "light_gray",
                "name": "Light gray studio",
                "description": "plain light gray studio backdrop",
                "preview": "A plain, light gray studio wall: clean and neutral.",
            }
        ],
        outfits=[
            {
                "id": "navy_suit",
                "name": "Navy suit",
                "description": "tailored navy suit jacket and white collared shirt",
                "preview": "A tailored navy suit jacket over a white collared shirt.",
            }
        ],
        lighting_setups=[
            {
                "id": "soft_even",
                "name": "Soft and even",
                "description": "soft even key light with gentle fill",
                "preview": "Soft, even light with few shadows: friendly and clear.",
            }
        ],
    )
    styles: list[Style]
    backgrounds: list[Background] = Field(
        default_factory=list, description="For a render's `background` or a team look's"
    )
    outfits: list[CatalogOption] = Field(default_factory=list, description="For a render's `outfit`")
    lighting_setups: list[CatalogOption] = Field(
        default_factory=list, description="For a render's `lighting`"
    )


# Erasure


class ErasureAccepted(BaseModel):
    model_config = _example(erasure_id=ERASURE_ID, status="pending", receipt_salt="q3N5...Zw")
    erasure_id: str
    status: ErasureStatus
    receipt_salt: str | None = Field(
        default=None,
        description="Given once, in the answer that started the erasure, and stored nowhere: with it the "
        "person checks that the signed receipt names them (`likeness receipt verify FILE --subject ID "
        "--salt SALT`). The receipt itself holds only a salted hash of the subject id.",
    )


class Erasure(BaseModel):
    model_config = _example(
        id=ERASURE_ID,
        tenant="acme",
        subject_hmac="4f1c...e9",
        status="completed",
        cause="request",
        key_name="likeness-subject-" + SUBJECT_ID,
        requested_at=WHEN,
        key_destroyed_at=WHEN,
        completed_at=WHEN,
        objects_deleted=42,
        bytes_deleted=73400320,
        records_deleted=9,
        events_purged=57,
        backups_expire_by="2025-01-09T03:04:05Z",
        last_error=None,
        attempts=1,
    )
    id: str
    tenant: str
    subject_hmac: str = Field(description="The subject as a keyed HMAC; the receipt holds nothing personal")
    status: ErasureStatus
    cause: str
    key_name: str
    requested_at: datetime | None
    key_destroyed_at: datetime | None
    completed_at: datetime | None
    objects_deleted: int
    bytes_deleted: int
    records_deleted: int
    events_purged: int
    backups_expire_by: datetime | None = Field(
        description="Vault snapshots hold the destroyed key until then"
    )
    last_error: str | None
    attempts: int


# Retention policy and receipts


class RetentionScheduleIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "photos_days": 30,
                    "photos_deleted_after_training": True,
                    "models_days": 90,
                    "renders_days": 90,
                    "inactivity_days": 180,
                }
            ]
        },
    )
    photos_days: Days = Field(default=0, description="0: the service default")
    photos_deleted_after_training: bool = False
    models_days: Days = Field(default=0)
    renders_days: Days = Field(default=0)
    inactivity_days: Days = Field(default=0)


class RetentionPolicy(BaseModel):
    model_config = _example(
        schedule={
            "photos_days": 30,
            "photos_deleted_after_training": True,
            "models_days": 90,
            "renders_days": 90,
            "inactivity_days": 180,
        },
        tenant_specific=True,
        hard_cap_days=1095,
        backups_retention_days=30,
        text="Photos are deleted 30 days after upload...",
    )
    schedule: Retention = Field(description="What subjects opened from now on get")
    tenant_specific: bool = Field(description="False: the tenant has set no schedule; these are the defaults")
    hard_cap_days: int = Field(description="No subject is kept longer than this, whatever the schedule")
    backups_retention_days: int = Field(description="Vault snapshots keep a destroyed key this long")
    text: str = Field(description="The schedule as a retention policy a person can read")


class ReceiptSignature(BaseModel):
    alg: str = Field(examples=["Ed25519"])
    kid: str
    value: str = Field(description="base64url Ed25519 signature of the canonical JSON of `receipt`")


class ErasureReceipt(BaseModel):
    model_config = _example(
        receipt={
            "type": "likeness.erasure_receipt",
            "version": 1,
            "erasure_id": ERASURE_ID,
            "subject_hmac": "4f1c...e9",
            "key_destroyed_at": WHEN,
        },
        signature={"alg": "Ed25519", "kid": "r1", "value": "c2lnbmF0dXJl"},
    )
    receipt: dict[str, Any] = Field(description="The facts; the subject appears only as a keyed HMAC")
    signature: ReceiptSignature


class JsonWebKey(BaseModel):
    model_config = ConfigDict(extra="allow")
    kty: str = Field(examples=["OKP"])
    kid: str


class ReceiptKeys(BaseModel):
    model_config = _example(
        keys=[
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "r1"}
        ]
    )
    keys: list[JsonWebKey] = Field(description="Ed25519 public keys (JWK) that verify erasure receipts")


# Team looks

SeedPolicy = Literal["fixed", "per_render"]


class TeamLookIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "Sales EMEA",
                    "style": "corporate",
                    "background": "light_gray",
                    "seed_policy": "fixed",
                }
            ]
        },
    )
    name: str = Field(min_length=1, max_length=60, pattern=NOT_BLANK_PATTERN)
    style: str = Field(pattern=CATALOG_ID_PATTERN, description="A style id from GET /v1/styles")
    background: str = Field(
        pattern=CATALOG_ID_PATTERN, description="A background id from `GET /v1/styles` (`backgrounds`)"
    )
    seed_policy: SeedPolicy = "fixed"
    seed: LookSeed | None = Field(default=None, description="Fixed looks: absent picks one")
    outfit: str | None = Field(
        default=None,
        pattern=CATALOG_ID_PATTERN,
        description="An outfit id every member wears; absent: each render chooses",
    )
    lighting: str | None = Field(
        default=None,
        pattern=CATALOG_ID_PATTERN,
        description="A lighting id for every member; absent: each render chooses",
    )


class TeamLook(BaseModel):
    model_config = _example(
        id="sales-emea",
        name="Sales EMEA",
        style="corporate",
        background="light_gray",
        seed_policy="fixed",
        seed=1234,
        created_at=WHEN,
        updated_at=WHEN,
    )
    id: str
    name: str
    style: str
    background: str
    outfit: str | None = Field(default=None, description="The outfit it fixes, if any")
    lighting: str | None = Field(default=None, description="The lighting it fixes, if any")
    seed_policy: Literal["unspecified", "fixed", "per_render"]
    seed: int
    created_at: datetime | None
    updated_at: datetime | None


class TeamLookList(BaseModel):
    looks: list[TeamLook]


# Health


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    backends: dict[str, bool]
