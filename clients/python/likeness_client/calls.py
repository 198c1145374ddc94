"""Every plain (non-streaming) call of the v1 API as data: method, path, body and how to read the answer.

The sync and the async client both run these, so the contract is written down once.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from likeness_client.models import (
    Erasure,
    ErasureAccepted,
    JobAccepted,
    Page,
    Photo,
    Render,
    Style,
    StyleList,
    Subject,
    Training,
    UploadResult,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: A photo to upload: a path, or a (file name, bytes) pair.
PhotoInput = str | os.PathLike[str] | tuple[str, bytes]
FilePart = tuple[str, tuple[str, bytes, str]]


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, str | int] | None = None
    json: Any = None
    files: Sequence[FilePart] | None = None


def segment(value: str) -> str:
    """An id as one path segment, whatever it holds (a malformed id must not change the route)."""
    return quote(value, safe="")


def _model(cls: type[M]) -> Callable[[httpx.Response], M]:
    def parse(response: httpx.Response) -> M:
        return cls.model_validate_json(response.content)

    return parse


def _page(key: str, cls: type[M]) -> Callable[[httpx.Response], Page[M]]:
    """`{"<key>": [...], "next_cursor": str | null}`; a list without `next_cursor` is one whole page."""

    def parse(response: httpx.Response) -> Page[M]:
        body = response.json()
        return Page(
            items=[cls.model_validate(item) for item in body.get(key, [])],
            next_cursor=body.get("next_cursor") or None,
        )

    return parse


def _page_params(limit: int | None, cursor: str | None) -> dict[str, str | int]:
    params: dict[str, str | int] = {}
    if limit is not None:
        params["limit"] = limit
    if cursor:
        params["cursor"] = cursor
    return params


def _styles(response: httpx.Response) -> list[Style]:
    return StyleList.model_validate_json(response.content).styles


# ------------------------------------------------------------------------------------------------ subjects


def create_subject(purpose: str, policy_version: str, external_ref: str | None) -> Call[Subject]:
    body: dict[str, Any] = {"consent": {"purpose": purpose, "policy_version": policy_version}}
    if external_ref is not None:
        body["external_ref"] = external_ref
    return Call("POST", "/v1/subjects", _model(Subject), json=body)


def get_subject(subject_id: str) -> Call[Subject]:
    return Call("GET", f"/v1/subjects/{segment(subject_id)}", _model(Subject))


def list_subjects(limit: int | None, cursor: str | None) -> Call[Page[Subject]]:
    return Call("GET", "/v1/subjects", _page("subjects", Subject), params=_page_params(limit, cursor))


def erase_subject(subject_id: str) -> Call[ErasureAccepted]:
    return Call("DELETE", f"/v1/subjects/{segment(subject_id)}", _model(ErasureAccepted))


def get_erasure(erasure_id: str) -> Call[Erasure]:
    return Call("GET", f"/v1/erasures/{segment(erasure_id)}", _model(Erasure))


def export_path(subject_id: str) -> str:
    return f"/v1/subjects/{segment(subject_id)}/export"


# ------------------------------------------------------------------------------------------------ photos


def photo_part(photo: PhotoInput) -> FilePart:
    if isinstance(photo, tuple):
        name, data = photo
    else:
        path = Path(photo)
        name, data = path.name, path.read_bytes()
    # The gateway decides the format by the content; the type sent is only a hint.
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return ("file", (name, data, content_type))


def upload_photos(subject_id: str, photos: Sequence[PhotoInput]) -> Call[UploadResult]:
    if not photos:
        raise ValueError("no photos to upload")
    files = [photo_part(photo) for photo in photos]
    return Call("POST", f"/v1/subjects/{segment(subject_id)}/photos", _model(UploadResult), files=files)


def list_photos(subject_id: str, limit: int | None, cursor: str | None) -> Call[Page[Photo]]:
    path = f"/v1/subjects/{segment(subject_id)}/photos"
    return Call("GET", path, _page("photos", Photo), params=_page_params(limit, cursor))


# ------------------------------------------------------------------------------------------------ trainings


def create_training(subject_id: str, steps: int | None) -> Call[JobAccepted]:
    body = {"steps": steps} if steps is not None else {}
    return Call("POST", f"/v1/subjects/{segment(subject_id)}/trainings", _model(JobAccepted), json=body)


def get_training(training_id: str) -> Call[Training]:
    return Call("GET", f"/v1/trainings/{segment(training_id)}", _model(Training))


def list_trainings(subject_id: str, limit: int | None, cursor: str | None) -> Call[Page[Training]]:
    path = f"/v1/subjects/{segment(subject_id)}/trainings"
    return Call("GET", path, _page("trainings", Training), params=_page_params(limit, cursor))


def cancel_training(training_id: str) -> Call[Training]:
    return Call("POST", f"/v1/trainings/{segment(training_id)}/cancel", _model(Training))


def training_events_path(training_id: str) -> str:
    return f"/v1/trainings/{segment(training_id)}/events"


# ------------------------------------------------------------------------------------------------ renders


def create_render(
    subject_id: str, training_id: str, styles: Sequence[str], images_per_style: int | None, seed: int | None
) -> Call[JobAccepted]:
    body: dict[str, Any] = {"training_id": training_id, "styles": list(styles)}
    if images_per_style is not None:
        body["images_per_style"] = images_per_style
    if seed is not None:
        body["seed"] = seed
    return Call("POST", f"/v1/subjects/{segment(subject_id)}/renders", _model(JobAccepted), json=body)


def get_render(render_id: str) -> Call[Render]:
    return Call("GET", f"/v1/renders/{segment(render_id)}", _model(Render))


def list_renders(subject_id: str, limit: int | None, cursor: str | None) -> Call[Page[Render]]:
    path = f"/v1/subjects/{segment(subject_id)}/renders"
    return Call("GET", path, _page("renders", Render), params=_page_params(limit, cursor))


def render_events_path(render_id: str) -> str:
    return f"/v1/renders/{segment(render_id)}/events"


def image_path(render_id: str, image_id: str) -> str:
    return f"/v1/renders/{segment(render_id)}/images/{segment(image_id)}"


def list_styles() -> Call[list[Style]]:
    return Call("GET", "/v1/styles", _styles)


#: Image types the renderer serves, and the suffix a saved file gets.
IMAGE_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
