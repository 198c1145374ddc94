"""The retention process: gRPC API, the reaper (event consumer, deadlines, periodic passes), orphan sweeps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import grpc

from likeness.grpc_user_tokens import on_wrong_subject
from likeness.runtime import Platform, run_grpc_service
from likeness.v1 import retention_pb2, retention_pb2_grpc
from retention.callers import CALLERS
from retention.config import RetentionSettings, get_settings
from retention.records import RetentionRecords
from retention.service import RetentionServicer

log = logging.getLogger(__name__)
SERVICE_NAME = retention_pb2.DESCRIPTOR.services_by_name["RetentionService"].full_name


def register_with(
    settings: RetentionSettings,
) -> Callable[[Platform, grpc.aio.Server], Awaitable[Callable[[], Awaitable[None]]]]:
    async def register(platform: Platform, server: grpc.aio.Server) -> Callable[[], Awaitable[None]]:
        records = await RetentionRecords.open(platform.bus, settings.kv_bucket_prefix)
        await records.order_existing_subjects()
        servicer = RetentionServicer(platform, records, settings)
        retention_pb2_grpc.add_RetentionServiceServicer_to_server(servicer, server)
        # Another person's token refused on a subject: recorded on that subject's log (`access.denied`).
        on_wrong_subject(servicer.record_if_denied)
        await servicer.resume_unfinished_erasures()
        await servicer.reaper.consume_events()
        background = [
            asyncio.create_task(servicer.reaper.run()),
            asyncio.create_task(servicer.run_orphan_sweeps()),
        ]

        async def on_stop() -> None:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await servicer.eraser.stop()

        return on_stop

    return register


def serve() -> None:
    settings = get_settings()
    asyncio.run(run_grpc_service(settings, [SERVICE_NAME], register_with(settings), CALLERS))
