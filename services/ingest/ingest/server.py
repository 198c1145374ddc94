"""The ingest process: the gRPC API, plus dropping a subject's photo records when they are erased.

Before anything else the process makes itself non-dumpable, and before it serves it starts the decoding
sandbox (`ingest.decoding`): if either fails, it does not start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc

from ingest.callers import CALLERS
from ingest.config import IngestSettings, get_settings
from ingest.decoding import protect_service_process, start_decoder
from ingest.records import PhotoRecords
from ingest.service import IngestServicer
from likeness.runtime import OnStop, Platform, purge_records_on_erasure, run_grpc_service
from likeness.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


def register_with(settings: IngestSettings) -> Callable[[Platform, grpc.aio.Server], Awaitable[OnStop]]:
    async def register(platform: Platform, server: grpc.aio.Server) -> OnStop:
        # The workers start and confine themselves (well under a second) before the service serves.
        decoder, stop_decoding = await asyncio.to_thread(start_decoder, settings)
        try:
            records = await PhotoRecords.open(platform.bus, settings.rejected_bound())
            servicer = IngestServicer(platform, records, settings, decoder)
            # The dlib models take about a second to load: load them before serving, not on the first photo.
            await asyncio.to_thread(servicer.analyzer.warm_up)
            ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)

            await purge_records_on_erasure(platform, "ingest", records.purge_subject)
        except BaseException:
            stop_decoding()
            raise

        async def stop() -> None:
            await asyncio.to_thread(stop_decoding)

        return stop

    return register


def serve() -> None:
    protect_service_process()  # first: the settings read secrets into this process's memory
    settings = get_settings()
    asyncio.run(run_grpc_service(settings, [SERVICE_NAME], register_with(settings), CALLERS))
