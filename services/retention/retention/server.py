"""The retention process: gRPC API plus the periodic sweep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import grpc

from likeness.runtime import Platform, run_grpc_service
from likeness.v1 import retention_pb2, retention_pb2_grpc
from retention.config import RetentionSettings, get_settings
from retention.records import RetentionRecords
from retention.service import RetentionServicer

log = logging.getLogger(__name__)
SERVICE_NAME = retention_pb2.DESCRIPTOR.services_by_name["RetentionService"].full_name


async def _sweep_forever(servicer: RetentionServicer, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await servicer.sweep()
        except Exception:
            log.exception("sweep failed; next pass will retry")


def register_with(
    settings: RetentionSettings,
) -> Callable[[Platform, grpc.aio.Server], Awaitable[Callable[[], Awaitable[None]]]]:
    async def register(platform: Platform, server: grpc.aio.Server) -> Callable[[], Awaitable[None]]:
        records = await RetentionRecords.open(platform.bus)
        servicer = RetentionServicer(platform, records, settings)
        retention_pb2_grpc.add_RetentionServiceServicer_to_server(servicer, server)
        await servicer.resume_unfinished_erasures()
        sweeper = asyncio.create_task(_sweep_forever(servicer, settings.sweep_interval_seconds))

        async def on_stop() -> None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

        return on_stop

    return register


def main() -> None:
    settings = get_settings()
    asyncio.run(run_grpc_service(settings, "retention", [SERVICE_NAME], register_with(settings)))
