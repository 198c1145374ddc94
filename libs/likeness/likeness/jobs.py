"""Pieces every job service (trainer, renderer) shares: job records in KV with compare-and-set, status
helpers, heartbeats on work-queue messages, and the cancellation flag a GPU loop polls between steps.

A running job learns of its cancellation at once: the worker watches the job's KV record (CancelTraining
and CancelRender write it; an erasure purges it) and subscribes to `subject.erased`; the heartbeat's poll
of the record is only the backstop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

import nats.errors
import nats.js.errors
from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.js.kv import KeyValue
from opentelemetry import propagate, trace

from likeness.bus import decode, kv_get, kv_records, subject_erased_filter
from likeness.gpu_usage import GpuUsage, usage_kind
from likeness.provisioning import TenantQueues
from likeness.runtime import Platform
from likeness.tenant_queues import Backlog, TenantQueuePicker, consumer_max_deliver
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, events_pb2
from likeness.vault_transit import KeyDestroyed

log = logging.getLogger(__name__)
_tracer = trace.get_tracer("likeness.jobs")

JS = common_pb2.JobStatus
TERMINAL = frozenset({JS.JOB_STATUS_SUCCEEDED, JS.JOB_STATUS_FAILED, JS.JOB_STATUS_CANCELLED})
STATUS_NAMES = {
    JS.JOB_STATUS_QUEUED: "queued",
    JS.JOB_STATUS_RUNNING: "running",
    JS.JOB_STATUS_SUCCEEDED: "succeeded",
    JS.JOB_STATUS_FAILED: "failed",
    JS.JOB_STATUS_CANCELLED: "cancelled",
}
#: The reasons a CancelFlag carries (and `finish` receives): the person asked, or the person is gone.
CANCELLED_ON_REQUEST = "cancelled on request"
SUBJECT_ERASED = "subject erased"
#: A grant of the job's purpose was withdrawn (or is missing) when it was due to run (`likeness.consent`).
CONSENT_WITHDRAWN_REASON = "consent withdrawn"


R = TypeVar("R", bound=Message)


class JobRecords(Generic[R]):
    """A KV bucket of job records keyed `<tenant>.<job_id>`; every write is compare-and-set."""

    def __init__(self, kv: KeyValue, cls: type[R]) -> None:
        self.kv = kv
        self.cls = cls

    @staticmethod
    def key(tenant: str, job_id: str) -> str:
        return f"{tenant}.{job_id}"

    async def create(self, record: R) -> None:
        tenant, job_id, _ = _identity(record)
        await self.kv.create(self.key(tenant, job_id), record.SerializeToString())

    async def get(self, tenant: str, job_id: str) -> tuple[R, int] | None:
        return await kv_get(self.kv, self.key(tenant, job_id), self.cls)

    async def mutate(self, tenant: str, job_id: str, change: Callable[[R], bool]) -> R | None:
        """Applies `change` (returns False to leave the record alone) with CAS retries; None if missing."""
        for _ in range(20):
            found = await self.get(tenant, job_id)
            if found is None:
                return None
            record, revision = found
            if not change(record):
                return record
            record.updated_at.CopyFrom(now_timestamp())  # type: ignore[attr-defined]
            try:
                await self.kv.update(self.key(tenant, job_id), record.SerializeToString(), last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            return record
        raise RuntimeError("job record kept changing under us")

    async def watch_cancellation(self, tenant: str, job_id: str, flag: CancelFlag) -> None:
        """Sets `flag` as soon as the record is cancelled or purged (erasure); runs until cancelled."""
        watcher = await self.kv.watch(self.key(tenant, job_id))
        try:
            async for entry in watcher:
                if entry is None:
                    continue  # the end of the initial values
                if entry.operation in ("DEL", "PURGE") or not entry.value:
                    flag.set(SUBJECT_ERASED)
                    return
                record = self.cls()
                record.ParseFromString(entry.value)
                if getattr(record, "status") == JS.JOB_STATUS_CANCELLED:  # noqa: B009 - R is a job record
                    flag.set(_cancel_reason(record))
                    return
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watcher.stop(), timeout=2.0)  # type: ignore[no-untyped-call]

    async def tenant_records(self, tenant: str) -> list[R]:
        """Every record of the tenant (see `kv_entries` for why this never replays a watch)."""
        return [record for record, _ in await kv_records(self.kv, self.cls, f"{tenant}.")]

    async def cancel_open(
        self,
        tenant: str,
        subject_id: str,
        matches: Callable[[object], bool],
        reason: str,
        release_queued: Callable[[object], Awaitable[object]] | None = None,
    ) -> int:
        """Cancels the subject's queued and running jobs that `matches` selects (a withdrawn consent's
        purpose); a running job's worker sees its record change and stops. Each job cancelled while still
        queued is handed to `release_queued` (which removes its queue message, so the place it holds is
        free at once rather than when a worker reaches and skips it). Returns how many were cancelled."""
        was_queued = False

        def cancel(record: R) -> bool:
            nonlocal was_queued
            status = getattr(record, "status")  # noqa: B009 - R is a job record
            if status in TERMINAL:
                return False
            was_queued = status == JS.JOB_STATUS_QUEUED
            setattr(record, "status", JS.JOB_STATUS_CANCELLED)  # noqa: B010
            setattr(record, "error", reason)  # noqa: B010
            return True

        cancelled = 0
        for record in await self.tenant_records(tenant):
            _, job_id, owner = _identity(record)
            if owner != subject_id or getattr(record, "status") in TERMINAL or not matches(record):  # noqa: B009
                continue
            was_queued = False
            updated = await self.mutate(tenant, job_id, cancel)
            if updated is None or getattr(updated, "error") != reason:  # noqa: B009
                continue
            cancelled += 1
            if was_queued and release_queued is not None:
                await release_queued(updated)
        return cancelled

    async def purge_subject(self, tenant: str, subject_id: str) -> int:
        removed = 0
        for record in await self.tenant_records(tenant):
            if _identity(record)[2] == subject_id:
                await self.kv.purge(self.key(tenant, _identity(record)[1]))
                removed += 1
        return removed


def _cancel_reason(record: Message) -> str:
    """Why a cancelled record was cancelled: a withdrawn consent says so, anything else was a request."""
    error = str(getattr(record, "error", ""))
    return CONSENT_WITHDRAWN_REASON if error == CONSENT_WITHDRAWN_REASON else CANCELLED_ON_REQUEST


def _identity(record: Message) -> tuple[str, str, str]:
    """(tenant, id, subject_id) of a Training or Render record."""
    fields = record.DESCRIPTOR.fields_by_name
    assert {"tenant", "id", "subject_id"} <= set(fields), "not a job record"
    values = {name: str(getattr(record, name)) for name in ("tenant", "id", "subject_id")}
    return values["tenant"], values["id"], values["subject_id"]


class CancelFlag:
    """Set from the event loop, read from the GPU thread between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        # An erasure outranks a cancellation: it decides that nothing of the job may remain.
        if self.reason != SUBJECT_ERASED:
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


async def heartbeat(msg: Msg, every: float, also: Callable[[], Awaitable[None]] | None = None) -> None:
    """Tells JetStream the job is alive (`in_progress`) well inside AckWait, until cancelled."""
    while True:
        await asyncio.sleep(every)
        with contextlib.suppress(nats.errors.Error):
            await msg.in_progress()
        if also is not None:
            try:
                await also()
            except Exception:
                log.warning("heartbeat check failed")


@contextlib.asynccontextmanager
async def running_heartbeat(
    msg: Msg, every: float, also: Callable[[], Awaitable[None]] | None = None
) -> AsyncIterator[None]:
    task = asyncio.create_task(heartbeat(msg, every, also))
    try:
        yield
    finally:
        await stop_task(task)


@contextlib.asynccontextmanager
async def _running(work: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    """Runs `work` as a task for the duration of the block (a failing watch only logs: the heartbeat's poll
    still catches the cancellation)."""

    async def guarded() -> None:
        try:
            await work()
        except Exception:
            log.warning("cancellation watch stopped")

    task = asyncio.create_task(guarded())
    try:
        yield
    finally:
        await stop_task(task)


async def stop_task(task: asyncio.Task[None], timeout: float = 5.0) -> None:
    """Cancels a helper task and waits until it has ended, without ever hanging the caller.

    On Python 3.11, `asyncio.wait_for` (used by nats-py's requests) can swallow a cancellation that
    arrives as the awaited reply does; a loop like the heartbeat then carries on and a plain `await task`
    never returns, which would stall the worker after its job. So the cancellation is repeated until it
    lands, and after `timeout` the task is left to end on its own.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
        if not task.done() and asyncio.get_running_loop().time() > deadline:
            log.warning("a job's helper task did not stop")
            return
    if not task.cancelled() and task.exception() is not None:
        log.warning("a job's helper task failed", extra={"error": type(task.exception()).__name__})


class JobCancelled(Exception):
    """The job was cancelled on request or its subject was erased; nothing more of it may be written."""


class PermanentJobFailure(Exception):
    """A failure that retrying cannot fix; its message goes on the record, so it names nothing personal."""


J = TypeVar("J", bound=Message)


class QueueWorker(ABC, Generic[J, R]):
    """One job at a time from a work queue, shared by the trainer and renderer workers.

    Per message: skip it if its record is gone or terminal (erased, cancelled while queued, or finished
    by an earlier delivery; `on_finished_redelivery` may complete what that delivery left undone);
    otherwise run it with `in_progress()` heartbeats, a watch on its record for a cancellation, and the
    subject's erasure events; ack after the durable write; `term()` when cancelled or failed for good;
    `nak()` with a growing delay for a transient failure until MaxDeliver, then fail the job with a reason.

    A worker that is killed (OOM, node lost) cannot fail its job: JetStream just redelivers after AckWait.
    With `reserve_final_delivery`, the consumer allows one delivery more than `max_deliver` attempts, and
    that extra delivery (which only happens when every attempt died without answering) fails the job with
    a reason instead of running it again; without it such a job would stay `running` forever.
    """

    job_type: type[J]
    #: The work queue and its per-tenant consumers (made by the serve role, `likeness.tenant_queues`).
    queues: TenantQueues
    reserve_final_delivery: bool = False

    def __init__(
        self,
        platform: Platform,
        records: JobRecords[R],
        ack_wait: float,
        max_deliver: int,
        idle_poll_max: float = 2.0,
    ) -> None:
        self.platform = platform
        self.records = records
        self.ack_wait = ack_wait
        self.max_deliver = max_deliver
        self.idle_poll_max = idle_poll_max
        #: Which delivery of its message the job being handled is (1 for the first): `finish` counts a
        #: failure on the last one as dead-lettered.
        self.delivery = 1
        self._current: tuple[str, str, CancelFlag] | None = None  # (tenant, subject, flag) of the running job

    @abstractmethod
    def identify(self, job: J) -> tuple[str, str, str]:
        """(tenant, subject_id, job_id) of a job message."""

    @abstractmethod
    async def run_job(self, job: J, flag: CancelFlag) -> None:
        """Does the work; raises JobCancelled as soon as `flag` is set (the GPU loop polls it)."""

    @abstractmethod
    async def finish(self, job: J, status: common_pb2.JobStatus.ValueType, reason: str) -> None:
        """Records a cancelled or failed end and announces it."""

    async def on_finished_redelivery(self, job: J, record: R) -> None:
        """A job whose record is already terminal was delivered again (its worker died before the ack).

        By default nothing: it is acknowledged. A worker may complete here what the earlier delivery could
        not (announce a success, remove leftovers); it must be idempotent.
        """

    @functools.cached_property
    def usage(self) -> GpuUsage:
        """This process's GPU-seconds per tenant (`likeness.gpu_usage`), written under its queue's kind."""
        return GpuUsage(self.platform.bus, usage_kind(self.stream))

    @property
    def stream(self) -> str:
        return self.queues.stream

    @property
    def consumer_max_deliver(self) -> int:
        """The MaxDeliver the serve role gives the tenants' consumers (`QueueScheduler`): with the reserved
        final delivery, one more than the attempts."""
        return consumer_max_deliver(self.max_deliver) if self.reserve_final_delivery else self.max_deliver

    async def run(self, stop: asyncio.Event) -> None:
        """Jobs one at a time, the tenants' queues taken round-robin (`likeness.tenant_queues`). The worker
        binds no consumer of its own and creates none: the serve role made them."""
        bus = self.platform.bus
        picker = TenantQueuePicker(bus.nc, bus.js, self.queues, idle_max=self.idle_poll_max)
        await bus.watch_events(subject_erased_filter(), self.on_subject_erased)
        async for msg, queue in picker.messages(stop):
            self._adopt_consumer_settings(queue)
            await self.handle(msg)

    def _adopt_consumer_settings(self, queue: Backlog) -> None:
        """The job's consumer's AckWait and MaxDeliver rule it (heartbeats, the last attempt, the kept final
        delivery): the serve role made the consumer with its `ack_wait_seconds` and `max_deliver`, and a
        worker whose own settings differ (a rollout half done) must still count deliveries as the server
        does."""
        if queue.ack_wait > 0:
            self.ack_wait = queue.ack_wait
        if queue.max_deliver > 0:
            reserved = 1 if self.reserve_final_delivery else 0
            self.max_deliver = max(1, queue.max_deliver - reserved)

    async def on_subject_erased(self, msg: Msg) -> None:
        event = decode(msg, events_pb2.SubjectErased)
        if self._current and self._current[:2] == (event.tenant, event.subject_id):
            self._current[2].set(SUBJECT_ERASED)

    async def handle(self, msg: Msg) -> None:
        job = decode(msg, self.job_type)
        tenant, subject_id, job_id = self.identify(job)
        found = await self.records.get(tenant, job_id)
        if found is None:
            await msg.ack()
            return
        self.delivery = msg.metadata.num_delivered or 1
        try:
            if getattr(found[0], "status") in TERMINAL:  # noqa: B009 - R is a job record
                await self.on_finished_redelivery(job, found[0])
                await msg.ack()
                return
            if self.reserve_final_delivery and self.delivery > self.max_deliver:
                reason = f"failed after {self.max_deliver} attempts (the worker stopped responding)"
                await self.finish(job, JS.JOB_STATUS_FAILED, reason)
                await msg.term()
                return
        except Exception:
            log.exception(
                "could not settle a finished job", extra={"job_id": job_id, "delivery": self.delivery}
            )
            await msg.nak(delay=2.0 * self.delivery)
            return
        flag = CancelFlag()
        self._current = (tenant, subject_id, flag)
        # The job continues the trace of the request that queued it (traceparent in the message headers).
        parent = propagate.extract(dict(msg.headers or {}))
        attributes = {"likeness.job_id": job_id}
        span = f"{self.queues.kind} job"
        with _tracer.start_as_current_span(span, context=parent, attributes=attributes):
            try:
                poll = functools.partial(self._poll_cancelled, tenant, job_id, flag)
                # The seconds this worker holds the job count to its tenant's GPU quota (`gpu_usage`).
                async with (
                    self.usage.held(tenant),
                    running_heartbeat(msg, self.ack_wait / 3, poll),
                    _running(functools.partial(self.records.watch_cancellation, tenant, job_id, flag)),
                ):
                    await self.run_job(job, flag)
                await msg.ack()
            except (JobCancelled, KeyDestroyed):
                await self.finish(job, JS.JOB_STATUS_CANCELLED, flag.reason or SUBJECT_ERASED)
                await msg.term()
            except PermanentJobFailure as failure:
                await self.finish(job, JS.JOB_STATUS_FAILED, str(failure))
                await msg.term()
            except Exception as exc:
                log.exception("job failed", extra={"job_id": job_id, "delivery": self.delivery})
                if self.delivery >= self.max_deliver:
                    reason = f"failed after {self.delivery} attempts ({type(exc).__name__})"
                    await self.finish(job, JS.JOB_STATUS_FAILED, reason)
                    await msg.term()
                else:
                    await msg.nak(delay=2.0 * self.delivery)
            finally:
                self._current = None

    async def _poll_cancelled(self, tenant: str, job_id: str, flag: CancelFlag) -> None:
        found = await self.records.get(tenant, job_id)
        if found is None:
            flag.set(SUBJECT_ERASED)
        elif getattr(found[0], "status") == JS.JOB_STATUS_CANCELLED:  # noqa: B009
            flag.set(_cancel_reason(found[0]))
