"""Every route of the v1 API as data, and every plain (non-streaming) call: method, path, body and how to
read the answer.

The sync and the async client both run these, so the contract is written down once. `ROUTES` lists each
route the client calls, by the gateway's own path template; a test compares it with the gateway's OpenAPI
document, so a route added to the gateway cannot be forgotten here.
"""

from __future__ import annotations

import mimetypes
import os
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from likeness_client.audit_models import AuditEntry
from likeness_client.consent_models import ConsentGrant, ConsentList, ConsentPolicy, ConsentWithdrawal
from likeness_client.deletion_models import ItemDeletion
from likeness_client.models import (
    Catalog,
    Erasure,
    ErasureAccepted,
    ErasureReceipt,
    Health,
    JobAccepted,
    Page,
    Photo,
    Readiness,
    ReceiptKeys,
    Render,
    RenderChoices,
    Retention,
    RetentionPolicy,
    Style,
    Subject,
    TeamLook,
    TeamLookList,
    TeamLookSpec,
    Training,
    UploadResult,
)
from likeness_client.photo_prep import prepare_photo
from likeness_client.summary_models import SubjectSummary
from likeness_client.usage_models import Usage

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: A photo to upload: a path, or a (file name, bytes) pair.
PhotoInput = str | os.PathLike[str] | tuple[str, bytes]
FilePart = tuple[str, tuple[str, bytes, str]]


def segment(value: str) -> str:
    """An id as one path segment, whatever it holds (a malformed id must not change the route)."""
    return quote(value, safe="")


@dataclass(frozen=True)
class Route:
    """One operation of the API: its method and path template, spelled as the gateway's OpenAPI spells it."""

    method: str
    template: str
    #: Sent with an `Idempotency-Key` (the same on every retry of one call): every POST, and the subject
    #: DELETE, whose retry then gets its first 202 again.
    idempotent: bool = False

    @property
    def parameters(self) -> list[str]:
        return [name for _, name, _, _ in string.Formatter().parse(self.template) if name]

    def path(self, *ids: str) -> str:
        """The template with `ids` in its placeholders, in order, each quoted as one segment."""
        names = self.parameters
        if len(ids) != len(names):
            raise ValueError(f"{self.template} takes {len(names)} ids, not {len(ids)}")
        return self.template.format_map(
            {name: segment(value) for name, value in zip(names, ids, strict=True)}
        )

    def matches(self, method: str, path: str) -> bool:
        """Whether a request (method, URL path) is a call of this route."""
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(self.template))
        return method.upper() == self.method and re.fullmatch(pattern, path) is not None


ROUTES: list[Route] = []


def _route(method: str, template: str, *, idempotent: bool | None = None) -> Route:
    route = Route(method, template, method == "POST" if idempotent is None else idempotent)
    ROUTES.append(route)
    return route


CREATE_SUBJECT = _route("POST", "/v1/subjects")
LIST_SUBJECTS = _route("GET", "/v1/subjects")
GET_SUBJECT = _route("GET", "/v1/subjects/{subject_id}")
ERASE_SUBJECT = _route("DELETE", "/v1/subjects/{subject_id}", idempotent=True)
EXPORT_SUBJECT = _route("GET", "/v1/subjects/{subject_id}/export")
UPLOAD_PHOTOS = _route("POST", "/v1/subjects/{subject_id}/photos")
LIST_PHOTOS = _route("GET", "/v1/subjects/{subject_id}/photos")
CREATE_TRAINING = _route("POST", "/v1/subjects/{subject_id}/trainings")
LIST_TRAININGS = _route("GET", "/v1/subjects/{subject_id}/trainings")
GET_TRAINING = _route("GET", "/v1/trainings/{training_id}")
TRAINING_EVENTS = _route("GET", "/v1/trainings/{training_id}/events")
CANCEL_TRAINING = _route("POST", "/v1/trainings/{training_id}/cancel")
CREATE_RENDER = _route("POST", "/v1/subjects/{subject_id}/renders")
LIST_RENDERS = _route("GET", "/v1/subjects/{subject_id}/renders")
GET_RENDER = _route("GET", "/v1/renders/{render_id}")
RENDER_EVENTS = _route("GET", "/v1/renders/{render_id}/events")
GET_IMAGE = _route("GET", "/v1/renders/{render_id}/images/{image_id}")
REJECT_IMAGE = _route("DELETE", "/v1/renders/{render_id}/images/{image_id}", idempotent=True)
# Per-item deletions: each is idempotent by design (a retry finishes what a failure left), so retried.
DELETE_PHOTO = _route("DELETE", "/v1/subjects/{subject_id}/photos/{photo_id}", idempotent=True)
DELETE_TRAINING = _route("DELETE", "/v1/trainings/{training_id}", idempotent=True)
DELETE_RENDER = _route("DELETE", "/v1/renders/{render_id}", idempotent=True)
RECTIFY_SUBJECT = _route("PATCH", "/v1/subjects/{subject_id}")
LIST_STYLES = _route("GET", "/v1/styles")
LIST_TEAM_LOOKS = _route("GET", "/v1/team-looks")
GET_TEAM_LOOK = _route("GET", "/v1/team-looks/{look_id}")
PUT_TEAM_LOOK = _route("PUT", "/v1/team-looks/{look_id}")
DELETE_TEAM_LOOK = _route("DELETE", "/v1/team-looks/{look_id}")
GET_RETENTION_POLICY = _route("GET", "/v1/retention-policy")
PUT_RETENTION_POLICY = _route("PUT", "/v1/retention-policy")
GRANT_CONSENT = _route("POST", "/v1/subjects/{subject_id}/consents")
LIST_CONSENTS = _route("GET", "/v1/subjects/{subject_id}/consents")
WITHDRAW_CONSENT = _route("DELETE", "/v1/subjects/{subject_id}/consents")
GET_CONSENT_POLICY = _route("GET", "/v1/consent-policy")
GET_SUBJECT_SUMMARY = _route("GET", "/v1/subjects/{subject_id}/summary")
LIST_PROCESSING_LOG = _route("GET", "/v1/subjects/{subject_id}/processing-log")
LIST_AUDIT_TRAIL = _route("GET", "/v1/audit")
GET_USAGE = _route("GET", "/v1/usage")
PUT_CONSENT_POLICY = _route("PUT", "/v1/consent-policy")
GET_ERASURE = _route("GET", "/v1/erasures/{erasure_id}")
GET_ERASURE_RECEIPT = _route("GET", "/v1/erasures/{erasure_id}/receipt")
GET_RECEIPT_KEYS = _route("GET", "/v1/receipt-keys")
HEALTH = _route("GET", "/healthz")
READINESS = _route("GET", "/readyz")


@dataclass(frozen=True)
class Call(Generic[T]):
    route: Route
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, str | int] | None = None
    json: Any = None
    files: Sequence[FilePart] | None = None

    def send_options(self) -> dict[str, Any]:
        """The keyword arguments of the clients' `_send` besides method and path."""
        return {
            "params": self.params,
            "json": self.json,
            "files": self.files,
            "idempotent": self.route.idempotent,
        }


def _call(route: Route, ids: Sequence[str], parse: Callable[[httpx.Response], T], **body: Any) -> Call[T]:
    return Call(route, route.path(*ids), parse, **body)


def _model(cls: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        return cls.model_validate_json(response.content)

    return parse


def _nothing(response: httpx.Response) -> None:
    return None


def _page(key: str, cls: type[M]) -> Callable[[httpx.Response], Page[M]]:
    """`{"<key>": [...], "next_cursor": str | null}`; a list without `next_cursor` is one whole page."""

    def parse(response: httpx.Response) -> Page[M]:
        body = response.json()
        return Page(
            items=[cls.model_validate(item) for item in body.get(key, [])],
            next_cursor=body.get("next_cursor") or None,
        )

    return parse


def _listing(
    route: Route, ids: Sequence[str], key: str, cls: type[M], limit: int | None, cursor: str | None
) -> Call[Page[M]]:
    params: dict[str, str | int] = {}
    if limit is not None:
        params["limit"] = limit
    if cursor:
        params["cursor"] = cursor
    return _call(route, ids, _page(key, cls), params=params)


def _styles(response: httpx.Response) -> list[Style]:
    return Catalog.model_validate_json(response.content).styles


def _team_looks(response: httpx.Response) -> list[TeamLook]:
    return TeamLookList.model_validate_json(response.content).looks


# ------------------------------------------------------------------------------------------------ subjects


def create_subject(purpose: str, policy_version: str, external_ref: str | None) -> Call[Subject]:
    body: dict[str, Any] = {"consent": {"purpose": purpose, "policy_version": policy_version}}
    if external_ref is not None:
        body["external_ref"] = external_ref
    return _call(CREATE_SUBJECT, [], _model(Subject), json=body)


def rectify_subject(subject_id: str, external_ref: str | None) -> Call[Subject]:
    """Corrects the tenant's reference for the person (None forgets it); stored only as a keyed HMAC."""
    return _call(RECTIFY_SUBJECT, [subject_id], _model(Subject), json={"external_ref": external_ref})


def get_subject(subject_id: str) -> Call[Subject]:
    return _call(GET_SUBJECT, [subject_id], _model(Subject))


def get_subject_summary(subject_id: str) -> Call[SubjectSummary]:
    return _call(GET_SUBJECT_SUMMARY, [subject_id], _model(SubjectSummary))


def list_processing_log(subject_id: str, limit: int | None, cursor: str | None) -> Call[Page[AuditEntry]]:
    return _listing(LIST_PROCESSING_LOG, [subject_id], "entries", AuditEntry, limit, cursor)


def list_audit_trail(limit: int | None, cursor: str | None) -> Call[Page[AuditEntry]]:
    return _listing(LIST_AUDIT_TRAIL, [], "entries", AuditEntry, limit, cursor)


def get_usage() -> Call[Usage]:
    return _call(GET_USAGE, [], _model(Usage))


def list_subjects(limit: int | None, cursor: str | None) -> Call[Page[Subject]]:
    return _listing(LIST_SUBJECTS, [], "subjects", Subject, limit, cursor)


def erase_subject(subject_id: str) -> Call[ErasureAccepted]:
    return _call(ERASE_SUBJECT, [subject_id], _model(ErasureAccepted))


def get_erasure(erasure_id: str) -> Call[Erasure]:
    return _call(GET_ERASURE, [erasure_id], _model(Erasure))


def get_erasure_receipt(erasure_id: str) -> Call[ErasureReceipt]:
    return _call(GET_ERASURE_RECEIPT, [erasure_id], _model(ErasureReceipt))


def get_receipt_keys() -> Call[ReceiptKeys]:
    return _call(GET_RECEIPT_KEYS, [], _model(ReceiptKeys))


# ------------------------------------------------------------------------------------------------ photos


def photo_part(photo: PhotoInput, prepare: bool = True) -> FilePart:
    """The multipart part of one photo; with `prepare`, the photo made fit to leave the machine first
    (upright, sRGB, capped, no metadata: `likeness_client.photo_prep`)."""
    if isinstance(photo, tuple):
        name, data = photo
    else:
        path = Path(photo)
        name, data = path.name, path.read_bytes()
    if prepare:
        prepared = prepare_photo(name, data)
        return ("file", (prepared.name, prepared.data, prepared.content_type))
    # The gateway decides the format by the content; the type sent is only a hint.
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return ("file", (name, data, content_type))


def upload_photos(subject_id: str, photos: Sequence[PhotoInput], prepare: bool = True) -> Call[UploadResult]:
    if not photos:
        raise ValueError("no photos to upload")
    files = [photo_part(photo, prepare) for photo in photos]
    return _call(UPLOAD_PHOTOS, [subject_id], _model(UploadResult), files=files)


def delete_photo(subject_id: str, photo_id: str, with_models: bool) -> Call[ItemDeletion]:
    """One photo; the answer names the models trained on it, deleted too with `with_models`."""
    params: dict[str, str | int] = {"with_models": "true"} if with_models else {}
    return _call(DELETE_PHOTO, [subject_id, photo_id], _model(ItemDeletion), params=params)


def list_photos(subject_id: str, limit: int | None, cursor: str | None) -> Call[Page[Photo]]:
    return _listing(LIST_PHOTOS, [subject_id], "photos", Photo, limit, cursor)


# ------------------------------------------------------------------------------------------------ trainings


def create_training(subject_id: str, steps: int | None) -> Call[JobAccepted]:
    body = {"steps": steps} if steps is not None else {}
    return _call(CREATE_TRAINING, [subject_id], _model(JobAccepted), json=body)


def get_training(training_id: str) -> Call[Training]:
    return _call(GET_TRAINING, [training_id], _model(Training))


def list_trainings(subject_id: str, limit: int | None, cursor: str | None) -> Call[Page[Training]]:
    return _listing(LIST_TRAININGS, [subject_id], "trainings", Training, limit, cursor)


def cancel_training(training_id: str) -> Call[Training]:
    return _call(CANCEL_TRAINING, [training_id], _model(Training))


def delete_training(training_id: str) -> Call[ItemDeletion]:
    """The training and its model: every version of its weights, templates and checkpoints."""
    return _call(DELETE_TRAINING, [training_id], _model(ItemDeletion))


# ------------------------------------------------------------------------------------------------ renders


def create_render(
    subject_id: str,
    training_id: str | None,
    styles: Sequence[str],
    images_per_style: int | None,
    seed: int | None,
    team_look_id: str | None,
    instant: bool = False,
    choices: RenderChoices | None = None,
    priority: str | None = None,
) -> Call[JobAccepted]:
    body: dict[str, Any] = {"styles": list(styles)}
    if instant:
        body["instant"] = True
    optional = {
        "training_id": training_id,
        "images_per_style": images_per_style,
        "seed": seed,
        "team_look_id": team_look_id,
        "priority": priority,
    }
    if choices is not None:
        optional |= choices.model_dump()
    body |= {name: value for name, value in optional.items() if value is not None}
    return _call(CREATE_RENDER, [subject_id], _model(JobAccepted), json=body)


def get_render(render_id: str) -> Call[Render]:
    return _call(GET_RENDER, [render_id], _model(Render))


def reject_image(render_id: str, image_id: str) -> Call[ItemDeletion]:
    """The person rejects one image: every version of it is deleted (`render`: the render without it)."""
    return _call(REJECT_IMAGE, [render_id, image_id], _model(ItemDeletion))


def delete_render(render_id: str) -> Call[ItemDeletion]:
    return _call(DELETE_RENDER, [render_id], _model(ItemDeletion))


def list_renders(subject_id: str, limit: int | None, cursor: str | None) -> Call[Page[Render]]:
    return _listing(LIST_RENDERS, [subject_id], "renders", Render, limit, cursor)


def list_styles() -> Call[list[Style]]:
    return _call(LIST_STYLES, [], _styles)


def get_catalog() -> Call[Catalog]:
    return _call(LIST_STYLES, [], _model(Catalog))


# ------------------------------------------------------------------------------------------------ tenant


def list_team_looks() -> Call[list[TeamLook]]:
    return _call(LIST_TEAM_LOOKS, [], _team_looks)


def get_team_look(look_id: str) -> Call[TeamLook]:
    return _call(GET_TEAM_LOOK, [look_id], _model(TeamLook))


def put_team_look(look_id: str, look: TeamLookSpec) -> Call[TeamLook]:
    body = look.model_dump(mode="json", exclude_none=True)
    return _call(PUT_TEAM_LOOK, [look_id], _model(TeamLook), json=body)


def delete_team_look(look_id: str) -> Call[None]:
    return _call(DELETE_TEAM_LOOK, [look_id], _nothing)


def get_retention_policy() -> Call[RetentionPolicy]:
    return _call(GET_RETENTION_POLICY, [], _model(RetentionPolicy))


def set_retention_policy(schedule: Retention) -> Call[RetentionPolicy]:
    body = schedule.model_dump(mode="json")
    return _call(PUT_RETENTION_POLICY, [], _model(RetentionPolicy), json=body)


# ------------------------------------------------------------------------------------------------ consents


def grant_consent(
    subject_id: str, purpose: str, policy_version: str, expires_at: datetime | None
) -> Call[ConsentGrant]:
    body: dict[str, Any] = {"purpose": purpose, "policy_version": policy_version}
    if expires_at is not None:
        body["expires_at"] = expires_at.isoformat()
    return _call(GRANT_CONSENT, [subject_id], _model(ConsentGrant), json=body)


def list_consents(subject_id: str) -> Call[list[ConsentGrant]]:
    def parse(response: httpx.Response) -> list[ConsentGrant]:
        return ConsentList.model_validate_json(response.content).grants

    return _call(LIST_CONSENTS, [subject_id], parse)


def withdraw_consent(subject_id: str, purpose: str) -> Call[ConsentWithdrawal]:
    return _call(WITHDRAW_CONSENT, [subject_id], _model(ConsentWithdrawal), params={"purpose": purpose})


def get_consent_policy() -> Call[ConsentPolicy]:
    return _call(GET_CONSENT_POLICY, [], _model(ConsentPolicy))


def set_consent_policy(policy: ConsentPolicy) -> Call[ConsentPolicy]:
    return _call(PUT_CONSENT_POLICY, [], _model(ConsentPolicy), json=policy.model_dump(mode="json"))


# ------------------------------------------------------------------------------------------------ operations


def get_health() -> Call[Health]:
    return _call(HEALTH, [], _model(Health))


def get_readiness() -> Call[Readiness]:
    return _call(READINESS, [], _model(Readiness))


#: Image types the renderer serves, and the suffix a saved file gets.
IMAGE_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
