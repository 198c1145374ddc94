"""The gateway's NATS connection: its idempotency bucket, erasure purges, event feeds for SSE, and the
replicas' rate-limit reports (`gateway.ratelimit_sync`).

It connects as the `gateway` NATS user, which may read and write its own bucket, bind its erasures
consumer, subscribe to the events it streams and speak on the rate-limit sync subject, nothing else;
the bucket and the consumer are made by `likeness bootstrap`, never here.

The gateway starts without NATS (it connects in the background and keeps retrying), like it starts with
a backend down: what needs NATS answers 503 `unavailable` meanwhile and `/readyz` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from gateway.access import LiveSubjects
from gateway.config import GatewaySettings
from gateway.errors import unavailable
from gateway.idempotency import IdempotencyStore
from gateway.job_cache import JobCache
from gateway.ratelimit_sync import RateLimitSync
from likeness.bus import (
    Bus,
    NotProvisioned,
    connect_options,
    decode,
    event_nats_subject,
    nats_servers,
    report_nats_error,
    subject_erased_filter,
)
from likeness.jobs import stop_task
from likeness.v1 import events_pb2

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 1.0
#: Events that change a training or a render (progress, completion, failure, cancellation).
JOB_EVENTS = ("training.*", "render.*")


class NatsLink:
    def __init__(
        self,
        settings: GatewaySettings,
        live: LiveSubjects | None = None,
        jobs: JobCache | None = None,
        rate_sync: RateLimitSync | None = None,
    ) -> None:
        self.settings = settings
        self.live = live
        self.jobs = jobs
        self.rate_sync = rate_sync
        self.bus: Bus | None = None
        self.idempotency: IdempotencyStore | None = None
        self._task: asyncio.Task[None] | None = None
        self._reported: set[str] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect())

    async def _connect(self) -> None:
        while True:
            # nats-py keeps trying the first connect too (max_reconnect_attempts=-1); its errors are
            # reported once per kind rather than with a traceback each time.
            nc = await nats.connect(
                nats_servers(self.settings.nats_url),
                name="gateway",
                **(
                    connect_options(self.settings.nats_credentials())
                    | {
                        "reconnect_time_wait": RECONNECT_SECONDS,
                        "connect_timeout": 2,
                        "drain_timeout": 5,
                        "error_cb": self._on_error,
                        "disconnected_cb": self._on_disconnected,
                        "reconnected_cb": self._on_reconnected,
                    }
                ),
            )
            bus = Bus(nc, nc.jetstream())
            try:
                # Bind only: the bucket and the erasures consumer are provisioned (`likeness bootstrap`).
                kv = await bus.kv(self.settings.idempotency_bucket)
                store = IdempotencyStore(kv, self.settings.idempotency_secret.get_secret_value().encode())
                await bus.watch_events(
                    subject_erased_filter(), self._purge_erased(store), self.settings.erasures_durable
                )
                if self.live is not None or self.jobs is not None:
                    # Every replica hears every erasure (a plain subscription), so none trusts a stale
                    # "active" for the subject, nor keeps its jobs.
                    await bus.nc.subscribe(subject_erased_filter(), cb=self._forget_erased)
                if self.jobs is not None:
                    for name in JOB_EVENTS:
                        await bus.nc.subscribe(event_nats_subject("*", "*", name), cb=self._job_changed)
                    self.jobs.listening = True
                if self.rate_sync is not None:
                    # Before readiness: a replica that serves also hears the others' spending.
                    await self.rate_sync.attach(bus.nc)
            except NotProvisioned as missing:
                # The bootstrap Job may still be running: said plainly, and tried again.
                log.error("NATS setup failed; retrying", extra={"reason": str(missing)})
                await bus.close()
                await asyncio.sleep(RECONNECT_SECONDS)
                continue
            except (OSError, nats.errors.Error, nats.js.errors.Error, TimeoutError):
                log.warning("NATS setup failed; retrying")
                await bus.close()
                await asyncio.sleep(RECONNECT_SECONDS)
                continue
            self.bus, self.idempotency = bus, store
            log.info("NATS connected")
            return

    async def _forget_erased(self, msg: Msg) -> None:
        try:
            event = decode(msg, events_pb2.SubjectErased)
        except ValueError:
            return
        if self.live is not None:
            self.live.forget(event.tenant, event.subject_id)
        if self.jobs is not None:
            self.jobs.invalidate_subject(event.tenant, event.subject_id)

    async def _job_changed(self, msg: Msg) -> None:
        """A training or render of the subject moved: its cached jobs are dropped (the subject names
        tenant and subject, `evt.<tenant>.<subject>.<kind>.<name>`; the payload need not be read)."""
        assert self.jobs is not None
        parts = msg.subject.split(".")
        if len(parts) == 5:
            self.jobs.invalidate_subject(parts[1], parts[2])

    async def _on_disconnected(self) -> None:
        # Events published meanwhile are never heard: cache nothing until the feed is back, and drop what
        # is cached, since what those events would have said is unknown.
        if self.jobs is not None:
            self.jobs.listening = False
            self.jobs.clear()

    async def _on_reconnected(self) -> None:
        # nats-py has restored the subscriptions by now.
        if self.jobs is not None and self.bus is not None:
            self.jobs.clear()
            self.jobs.listening = True

    async def _on_error(self, error: Exception) -> None:
        kind = type(error).__name__
        if "permissions violation" in str(error).lower():
            await report_nats_error(error)  # a refusal by nats-server, each one worth reporting
            return
        if kind not in self._reported:
            self._reported.add(kind)
            log.warning("NATS connection problem; retrying", extra={"error": kind})

    @staticmethod
    def _purge_erased(store: IdempotencyStore) -> Callable[[Msg], Awaitable[None]]:
        async def on_erased(msg: Msg) -> None:
            event = decode(msg, events_pb2.SubjectErased)
            removed = await store.purge_subject(event.tenant, event.subject_id)
            log.info("idempotency records purged", extra={"erasure_id": event.erasure_id, "records": removed})

        return on_erased

    def connected(self) -> bool:
        return self.bus is not None and self.bus.is_connected()

    def require_store(self) -> IdempotencyStore:
        if self.idempotency is None or not self.connected():
            raise unavailable("Idempotency records are unavailable right now; try again shortly.")
        return self.idempotency

    @contextlib.asynccontextmanager
    async def subscribe(self, nats_subject: str) -> AsyncIterator[asyncio.Queue[Msg]]:
        """Core NATS messages on `nats_subject` (JetStream publishes reach plain subscribers too: no
        consumer is created, nothing is left on the server when the stream ends). Without NATS the queue
        stays empty and the reader falls back on its periodic re-reads."""
        queue: asyncio.Queue[Msg] = asyncio.Queue(maxsize=256)
        if self.bus is None or not self.connected():
            yield queue
            return

        async def on_message(msg: Msg) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a reader that lags only misses triggers
                queue.put_nowait(msg)

        subscription = await self.bus.nc.subscribe(nats_subject, cb=on_message)
        try:
            yield queue
        finally:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()

    async def close(self) -> None:
        if self._task is not None:
            # A cancellation can be swallowed inside nats-py's connect (asyncio.wait_for on 3.11):
            # stop_task repeats it and never hangs shutdown.
            await stop_task(self._task, timeout=3.0)
        if self.bus is not None:
            await self.bus.close()
