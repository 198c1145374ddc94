"""Entry points of the renderer's two roles: `serve` (gRPC API) and `work` (GPU worker)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import grpc

from likeness.job_metrics import RENDER, QueueLagMonitor
from likeness.runtime import Platform, Register, purge_records_on_erasure, run_grpc_service, run_worker
from likeness.v1 import renderer_pb2, renderer_pb2_grpc
from renderer.config import RendererSettings, get_settings
from renderer.records import open_renders
from renderer.service import RendererServicer
from renderer.styles import load_backgrounds, load_styles
from renderer.team_looks import TeamLooks

log = logging.getLogger(__name__)
SERVICE_NAME = renderer_pb2.DESCRIPTOR.services_by_name["RendererService"].full_name


def _register_with(settings: RendererSettings) -> Register:
    async def register(platform: Platform, server: grpc.aio.Server) -> Callable[[], Awaitable[None]]:
        records = await open_renders(platform.bus)
        styles = load_styles()
        looks = await TeamLooks.open(platform.bus, styles, load_backgrounds())
        servicer = RendererServicer(platform, records, styles, settings, looks)
        renderer_pb2_grpc.add_RendererServiceServicer_to_server(servicer, server)

        await purge_records_on_erasure(platform, "renderer", records.purge_subject)
        # The always-up serve role measures its queue's lag: the GPU workers may be scaled to zero.
        lag = asyncio.create_task(QueueLagMonitor(platform.bus.js, RENDER).run())

        async def on_stop() -> None:
            lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag

        return on_stop

    return register


def serve() -> None:
    settings = get_settings()
    asyncio.run(run_grpc_service(settings, "renderer", [SERVICE_NAME], _register_with(settings)))


def work() -> None:
    from renderer import worker  # torch and diffusers load only in the worker role

    settings = get_settings()
    started = asyncio.Event()

    async def run(platform: Platform, stop: asyncio.Event) -> None:
        records = await open_renders(platform.bus)
        render_worker = await asyncio.to_thread(
            worker.RenderWorker, platform, records, load_styles(), settings
        )
        started.set()
        await render_worker.run(stop)

    asyncio.run(run_worker(settings, "renderer-worker", run, started.is_set))
