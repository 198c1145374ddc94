"""Record and job fields this service writes that the shared contracts do not carry yet.

The renderer's quality gate and team looks add fields to `likeness.v1` (proposed to the contract owner:
`RenderedImage.quality`, `Render.quality`/`team_look_id`/`background`, `SubmitRenderRequest.team_look_id`,
`RenderJob.background`). Until the stubs are regenerated with them, writing one is a no-op and reading one
gives its default; afterwards the same calls fill them in, with no other change here. Whatever a job must
say in every case (why it delivered fewer images than asked) also goes into `Render.error`.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from likeness.v1 import renderer_pb2
from renderer.quality import JobQuality, Output

_GATES = {"off": 1, "score": 2, "enforce": 3}  # QualityGate enum numbers in the proposal


def has_field(message: Message, name: str) -> bool:
    return name in message.DESCRIPTOR.fields_by_name


def _message_class(name: str) -> Any:
    return getattr(renderer_pb2, name, None)


def requested_team_look(request: renderer_pb2.SubmitRenderRequest) -> str:
    return str(getattr(request, "team_look_id", "")) if has_field(request, "team_look_id") else ""


def job_background(job: Message) -> str:
    return str(getattr(job, "background", "")) if has_field(job, "background") else ""


def set_background(message: Message, background: str) -> bool:
    """Sets `background` on a RenderJob or Render; False when the contract cannot carry it yet."""
    if not has_field(message, "background"):
        return False
    setattr(message, "background", background)  # noqa: B010 - field of a newer contract
    return True


def set_team_look(render: renderer_pb2.Render, look_id: str) -> None:
    if has_field(render, "team_look_id"):
        setattr(render, "team_look_id", look_id)  # noqa: B010


def set_image_quality(image: renderer_pb2.RenderedImage, output: Output) -> None:
    cls = _message_class("ImageQuality")
    if cls is None or not has_field(image, "quality") or output.score is None:
        return
    quality = cls(faces=output.score.faces, rerolls=output.rerolls, passed=output.passed)
    if output.score.distance is not None:
        quality.identity_distance = round(output.score.distance, 4)
    getattr(image, "quality").CopyFrom(quality)  # noqa: B009


def set_render_quality(render: renderer_pb2.Render, quality: JobQuality) -> None:
    cls = _message_class("RenderQuality")
    if cls is None or not has_field(render, "quality"):
        return
    getattr(render, "quality").CopyFrom(  # noqa: B009
        cls(
            gate=_GATES[quality.mode],
            images_requested=quality.requested,
            rerolls=quality.rerolls,
            failures=quality.failures,
            templates=quality.templates,
            shortfall_reason=quality.shortfall_reason(),
            note=quality.note(),
        )
    )
