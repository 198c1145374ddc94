"""Entry points of the trainer's two roles: `serve` (gRPC API) and `work` (GPU worker)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc
from nats.aio.msg import Msg

from likeness.bus import decode, subject_erased_filter
from likeness.runtime import Platform, run_grpc_service, run_worker
from likeness.v1 import events_pb2, trainer_pb2, trainer_pb2_grpc
from trainer.config import TrainerSettings, get_settings
from trainer.records import open_trainings
from trainer.service import TrainerServicer

log = logging.getLogger(__name__)
SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name


def _register_with(settings: TrainerSettings) -> Callable[[Platform, grpc.aio.Server], Awaitable[None]]:
    async def register(platform: Platform, server: grpc.aio.Server) -> None:
        records = await open_trainings(platform.bus)
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(
            TrainerServicer(platform, records, settings), server
        )

        async def on_erased(msg: Msg) -> None:
            event = decode(msg, events_pb2.SubjectErased)
            removed = await records.purge_subject(event.tenant, event.subject_id)
            log.info("training records purged", extra={"erasure_id": event.erasure_id, "records": removed})

        await platform.bus.watch_events(subject_erased_filter(), on_erased, durable="trainer-erasures")

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
