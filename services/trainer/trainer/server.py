"""Entry points of the trainer's two roles: `serve` (gRPC API) and `work` (GPU worker)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import grpc

from likeness.job_metrics import TRAIN, QueueLagMonitor
from likeness.runtime import Platform, Register, purge_records_on_erasure, run_grpc_service, run_worker
from likeness.v1 import trainer_pb2, trainer_pb2_grpc
from trainer.config import TrainerSettings, get_settings
from trainer.records import open_trainings
from trainer.service import TrainerServicer

log = logging.getLogger(__name__)
SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


def _register_with(settings: TrainerSettings) -> Register:
    async def register(platform: Platform, server: grpc.aio.Server) -> Callable[[], Awaitable[None]]:
        records = await open_trainings(platform.bus)
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(
            TrainerServicer(platform, records, settings), server
        )

        await purge_records_on_erasure(platform, "trainer", records.purge_subject)
        # The always-up serve role measures its queue's lag: the GPU workers may be scaled to zero.
        lag = asyncio.create_task(QueueLagMonitor(platform.bus.js, TRAIN).run())

        async def on_stop() -> None:
            lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag

        return on_stop

    return register


def serve() -> None:
    settings = get_settings()
    asyncio.run(run_grpc_service(settings, "trainer", [SERVICE_NAME], _register_with(settings)))


def work() -> None:
    from trainer import worker  # torch and diffusers load only in the worker role

    settings = get_settings()
    started = asyncio.Event()

    async def run(platform: Platform, stop: asyncio.Event) -> None:
        records = await open_trainings(platform.bus)
        training_worker = await asyncio.to_thread(worker.TrainingWorker, platform, records, settings)
        started.set()
        await training_worker.run(stop)

    asyncio.run(run_worker(settings, "trainer-worker", run, started.is_set))
