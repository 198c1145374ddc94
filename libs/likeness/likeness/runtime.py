"""What every service process shares: its connections (NATS, S3, Vault), telemetry, health and shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from nats.aio.msg import Msg

from likeness.bus import Bus, decode, subject_erased_filter
from likeness.config import CommonSettings
from likeness.grpc_server import GrpcServer, install_shutdown_handlers
from likeness.sealed import SealedObjects
from likeness.store import ObjectStore
from likeness.telemetry import MetricsServer, setup_logging, setup_tracing
from likeness.v1 import events_pb2
from likeness.vault_transit import SubjectKeys

log = logging.getLogger(__name__)


@dataclass
class Platform:
    settings: CommonSettings
    bus: Bus
    store: ObjectStore
    keys: SubjectKeys
    sealed: SealedObjects

    @classmethod
    async def connect(cls, settings: CommonSettings, name: str) -> Platform:
        bus = await Bus.connect(settings.nats_url, name)
        await bus.ensure_streams()
        store = ObjectStore.from_settings(settings)
        keys = await asyncio.to_thread(SubjectKeys.from_settings, settings)
        return cls(settings, bus, store, keys, SealedObjects(keys, store))

    def dependency_checks(self) -> dict[str, Callable[[], bool]]:
        return {"nats": self.bus.is_connected, "s3": self.store.is_available, "vault": self.keys.is_available}

    async def close(self) -> None:
        await self.bus.close()


def bootstrap(settings: CommonSettings, name: str) -> None:
    setup_logging(name, settings.log_level)
    setup_tracing(name, settings.otlp_endpoint)


Register = Callable[[Platform, grpc.aio.Server], Awaitable[Callable[[], Awaitable[None]] | None]]


async def run_grpc_service(
    settings: CommonSettings, name: str, service_names: Sequence[str], register: Register
) -> None:
    """Connects, registers the servicers, serves until SIGTERM, then drains (gRPC, then NATS)."""
    bootstrap(settings, name)
    stop = asyncio.Event()
    install_shutdown_handlers(stop)
    platform = await Platform.connect(settings, name)
    server = GrpcServer(settings.grpc_port, service_names, platform.dependency_checks())
    on_stop = await register(platform, server.server)
    await server.start()
    metrics = MetricsServer(settings.metrics_port, lambda: server.serving)
    await metrics.start()
    log.info("serving", extra={"grpc_port": settings.grpc_port})
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    if on_stop is not None:
        await on_stop()
    await metrics.stop()
    await platform.close()


Work = Callable[[Platform, asyncio.Event], Awaitable[None]]


async def run_worker(settings: CommonSettings, name: str, work: Work, ready: Callable[[], bool]) -> None:
    """Runs a queue worker until SIGTERM; `work` must return once `stop` is set (after its current step)."""
    bootstrap(settings, name)
    stop = asyncio.Event()
    install_shutdown_handlers(stop)
    platform = await Platform.connect(settings, name)

    def healthy() -> bool:
        return ready() and platform.bus.is_connected()

    metrics = MetricsServer(settings.metrics_port, healthy)
    await metrics.start()
    log.info("worker started")
    try:
        await work(platform, stop)
    finally:
        await metrics.stop()
        await platform.close()


PurgeSubject = Callable[[str, str], Awaitable[int]]


async def purge_records_on_erasure(platform: Platform, service: str, purge: PurgeSubject) -> None:
    """Drops this service's KV records of a subject when `subject.erased` arrives.

    A durable consumer shared by the service's replicas: each erasure is handled once, including the ones
    announced while the service was down.
    """

    async def on_erased(msg: Msg) -> None:
        event = decode(msg, events_pb2.SubjectErased)
        removed = await purge(event.tenant, event.subject_id)
        log.info("records purged", extra={"erasure_id": event.erasure_id, "records": removed})

    await platform.bus.watch_events(subject_erased_filter(), on_erased, durable=f"{service}-erasures")
