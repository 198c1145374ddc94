"""The ingest process: the gRPC API, plus dropping a subject's photo records when they are erased."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc

from ingest.callers import CALLERS
from ingest.config import IngestSettings, get_settings
from ingest.records import PhotoRecords
from ingest.service import IngestServicer
from likeness.runtime import Platform, purge_records_on_erasure, run_grpc_service
from likeness.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


def register_with(settings: IngestSettings) -> Callable[[Platform, grpc.aio.Server], Awaitable[None]]:
    async def register(platform: Platform, server: grpc.aio.Server) -> None:
        records = await PhotoRecords.open(platform.bus)
        servicer = IngestServicer(platform, records, settings)
        # The dlib models take about a second to load: load them before serving, not on the first photo.
        await asyncio.to_thread(servicer.analyzer.warm_up)
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)

        await purge_records_on_erasure(platform, "ingest", records.purge_subject)

    return register


def serve() -> None:
    settings = get_settings()
    asyncio.run(run_grpc_service(settings, [SERVICE_NAME], register_with(settings), CALLERS))
