"""What every service process shares: its connections (NATS, S3, Vault), telemetry, health and shutdown;
the skeleton of each role (a gRPC API, a queue worker, and both of a job service); and the one entry-point
convention, `python -m <service> <role>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc
from nats.aio.msg import Msg

from likeness.audit import CallAudit
from likeness.bus import Bus, decode, subject_erased_filter
from likeness.config import CommonSettings, JobQueueSettings
from likeness.grpc_callers import CallerTable
from likeness.grpc_server import GrpcServer, install_shutdown_handlers
from likeness.grpc_tls import ReloadingServerCredentials
from likeness.grpc_user_tokens import user_token_interceptor
from likeness.job_metrics import Queue, QueueLagMonitor
from likeness.sealed import SealedObjects
from likeness.store import ObjectStore
from likeness.stream_usage import StreamUsageMonitor, reported_streams
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
        # Streams, buckets and consumers are bootstrap's (`likeness bootstrap`): this process only binds.
        bus = await Bus.connect(settings.nats_url, name, settings.nats_credentials())
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


OnStop = Callable[[], Awaitable[None]]
#: Adds a service's servicers to the server and starts its background work; returns what stops that work.
Register = Callable[[Platform, grpc.aio.Server], Awaitable[OnStop | None]]


async def run_grpc_service(
    settings: CommonSettings, service_names: Sequence[str], register: Register, callers: CallerTable
) -> None:
    """Connects, registers the servicers, serves until SIGTERM, then drains (gRPC, then NATS).

    `callers`: who may call which method (the service's `callers.CALLERS`); refusals go to the audit trail.
    """
    name = settings.service_name
    bootstrap(settings, name)
    # Before any connection: a process without its certificate must fail at once, not after a while.
    tls = ReloadingServerCredentials(settings.tls_dir)
    stop = asyncio.Event()
    install_shutdown_handlers(stop)
    platform = await Platform.connect(settings, name)
    server = GrpcServer(
        settings.grpc_port,
        service_names,
        platform.dependency_checks(),
        tls=tls,
        callers=callers,
        health_port=settings.health_port,
        on_denied=CallAudit(platform.bus).denied,
        reflection=not settings.is_production,
        user_tokens=user_token_interceptor(settings),
    )
    on_stop = await register(platform, server.server)
    # The fill of the streams this identity can see, for the alerts that fire well before one is full.
    usage = StreamUsageMonitor(platform.bus.js, reported_streams(settings.nats_user or name))
    usage_task = asyncio.create_task(usage.run(), name="stream-usage")
    await server.start()
    metrics = MetricsServer(settings.metrics_port, lambda: server.serving)
    await metrics.start()
    log.info("serving", extra={"grpc_port": server.port, "health_port": server.health_port})
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    usage_task.cancel()
    if on_stop is not None:
        await on_stop()
    await metrics.stop()
    await platform.close()


Work = Callable[[Platform, asyncio.Event], Awaitable[None]]


async def run_worker(settings: CommonSettings, work: Work, ready: Callable[[], bool]) -> None:
    """Runs a queue worker until SIGTERM; `work` must return once `stop` is set (after its current step)."""
    name = f"{settings.service_name}-worker"
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


# ------------------------------------------------------------------------------------- job services


class SubjectRecords(Protocol):
    """A service's records (KV) that an erasure must remove, subject by subject."""

    async def purge_subject(self, tenant: str, subject_id: str, /) -> int: ...


class JobRunner(Protocol):
    """A queue worker (`likeness.jobs.QueueWorker`): runs jobs until `stop` is set."""

    async def run(self, stop: asyncio.Event, /) -> None: ...


RecordsT = TypeVar("RecordsT", bound=SubjectRecords)


def serve_job_api(
    settings: JobQueueSettings,
    grpc_service: str,
    queue: Queue,
    open_records: Callable[[Bus], Awaitable[RecordsT]],
    add_servicer: Callable[[Platform, RecordsT, grpc.aio.Server], Awaitable[None]],
    callers: CallerTable,
) -> None:
    """The `serve` role of a job service (trainer, renderer): its gRPC API over its job records, which it
    purges when their subject is erased, the lag of its work queue and the sweep of records whose job was
    never queued, both here because this role is always up while the GPU workers may be scaled to zero.
    `callers`: who may call which method."""

    async def register(platform: Platform, server: grpc.aio.Server) -> OnStop:
        records = await open_records(platform.bus)
        await add_servicer(platform, records, server)
        await purge_records_on_erasure(platform, settings.service_name, records.purge_subject)
        lag = asyncio.create_task(QueueLagMonitor(platform.bus.js, queue).run())
        sweeper = asyncio.create_task(_orphan_sweeper(platform, records, queue, settings))

        async def on_stop() -> None:
            for task in (lag, sweeper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        return on_stop

    asyncio.run(run_grpc_service(settings, [grpc_service], register, callers))


async def _orphan_sweeper(
    platform: Platform, records: object, queue: Queue, settings: JobQueueSettings
) -> None:
    # Imported here: `likeness.jobs` (under the sweeper) imports this module.
    from likeness.jobs import JobRecords
    from likeness.orphan_sweeper import OrphanSweeper

    if isinstance(records, JobRecords):
        grace, interval = settings.job_orphan_grace_seconds, settings.job_orphan_sweep_interval_seconds
        await OrphanSweeper(platform.bus, records, queue, grace, interval).run()


def work_job_queue(
    settings: CommonSettings,
    open_records: Callable[[Bus], Awaitable[RecordsT]],
    new_worker: Callable[[Platform, RecordsT], JobRunner],
) -> None:
    """The `work` role of a job service: builds its worker (in a thread: loading the base model takes a
    while and the event loop keeps answering meanwhile), reports ready once it is built, runs it until
    SIGTERM."""
    built = False

    async def work(platform: Platform, stop: asyncio.Event) -> None:
        nonlocal built
        records = await open_records(platform.bus)
        worker = await asyncio.to_thread(new_worker, platform, records)
        built = True
        await worker.run(stop)

    asyncio.run(run_worker(settings, work, lambda: built))


# -------------------------------------------------------------------------------------- entry point

Role = Callable[[], None]


def run_role(prog: str, roles: Mapping[str, Role], argv: Sequence[str] | None = None) -> None:
    """`python -m <prog> [role]`: runs the named role of a service; `serve` when none is named.

    Every service's `__main__` goes through here, so each starts the same way (the chart passes the role as
    the container's args, the dev stack as the module's). A wrong role exits with status 2 and the usage.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: python -m {prog} [{'|'.join(roles)}]"
    if args in (["-h"], ["--help"]):
        print(usage)
        return
    role = args[0] if args else "serve"
    if len(args) > 1 or role not in roles:
        problem = "one role at a time" if len(args) > 1 else f"unknown role {role!r}"
        print(f"{usage}\n{prog}: {problem}", file=sys.stderr)
        raise SystemExit(2)
    roles[role]()
