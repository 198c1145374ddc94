"""The renderer's two roles on the shared job-service skeleton (`likeness.runtime`): `serve` (the gRPC API
over the `renders` records, the style catalog and the tenants' team looks) and `work` (the GPU worker on
the `job.render` queue). The serve role also cancels a subject's renders of a purpose whose grant is withdrawn
(`likeness.consent`)."""

from __future__ import annotations

import grpc

from likeness.consent import INSTANT, cancel_jobs_on_withdrawal, render_purpose
from likeness.job_metrics import RENDER
from likeness.jobs import JobRecords, QueueWorker
from likeness.runtime import Platform, serve_job_api, work_job_queue
from likeness.v1 import jobs_pb2, renderer_pb2, renderer_pb2_grpc
from likeness_ml.pinned_weights import require_pinned
from renderer.callers import CALLERS
from renderer.catalog import load_catalog
from renderer.config import get_settings
from renderer.prompt_budget import check_prompt_budget
from renderer.records import open_renders
from renderer.service import RendererServicer
from renderer.styles import load_backgrounds, load_styles
from renderer.team_looks import TeamLooks

SERVICE_NAME = renderer_pb2.DESCRIPTOR.services_by_name["RendererService"].full_name
Renders = JobRecords[renderer_pb2.Render]


async def _add_servicer(platform: Platform, records: Renders, server: grpc.aio.Server) -> None:
    styles = load_styles()
    # The catalog loads (and is validated) before anything is served; a prompt over CLIP's window is
    # refused here rather than silently cut by the text encoder later.
    check_prompt_budget(styles, load_catalog())
    looks = await TeamLooks.open(platform.bus, styles, load_backgrounds())
    servicer = RendererServicer(platform, records, styles, get_settings(), looks)
    renderer_pb2_grpc.add_RendererServiceServicer_to_server(servicer, server)
    await cancel_jobs_on_withdrawal(platform.bus, "renderer", records, _purpose_of)


def _purpose_of(record: object) -> str:
    """An instant render is of the `instant` purpose (the photo it reads), one in a team look of
    `team_look`, any other of `headshots`."""
    if isinstance(record, renderer_pb2.Render) and record.instant:
        return INSTANT
    team_look_id = record.team_look_id if isinstance(record, renderer_pb2.Render) else ""
    return render_purpose(team_look_id)


def _new_worker(platform: Platform, records: Renders) -> QueueWorker[jobs_pb2.RenderJob, renderer_pb2.Render]:
    from renderer.worker import RenderWorker  # torch and diffusers load only in the worker role

    return RenderWorker(platform, records, load_styles(), get_settings())


def serve() -> None:
    serve_job_api(get_settings(), SERVICE_NAME, RENDER, open_renders, _add_servicer, CALLERS)


def work() -> None:
    settings = get_settings()
    # Before anything is loaded or connected: the weights must be the pinned ones (and real ones in
    # production), or the worker does not start.
    require_pinned(
        settings.base_model,
        "base_model",
        production=settings.is_production,
        process="renderer-worker",
        manifest_sha256=settings.base_model_manifest_sha256,
    )
    if settings.safety_model is not None:
        require_pinned(
            settings.safety_model,
            "safety_classifier",
            production=settings.is_production,
            process="renderer-worker",
            manifest_sha256=settings.safety_model_manifest_sha256,
        )
    if settings.identity_adapter is not None:
        require_pinned(
            settings.identity_adapter,
            "identity_adapter",
            production=settings.is_production,
            process="renderer-worker",
            manifest_sha256=settings.identity_adapter_manifest_sha256,
        )
    work_job_queue(settings, open_renders, _new_worker)
