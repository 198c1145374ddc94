"""Pieces every job service (trainer, renderer) shares: job records in KV with compare-and-set, status
helpers, heartbeats on work-queue messages, and the cancellation flag a GPU loop polls between steps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

import nats.errors
import nats.js.errors
from google.protobuf.message import Message
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from likeness.bus import kv_get, kv_keys
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2

log = logging.getLogger(__name__)

JS = common_pb2.JobStatus
TERMINAL = frozenset({JS.JOB_STATUS_SUCCEEDED, JS.JOB_STATUS_FAILED, JS.JOB_STATUS_CANCELLED})
STATUS_NAMES = {
    JS.JOB_STATUS_QUEUED: "queued",
    JS.JOB_STATUS_RUNNING: "running",
    JS.JOB_STATUS_SUCCEEDED: "succeeded",
    JS.JOB_STATUS_FAILED: "failed",
    JS.JOB_STATUS_CANCELLED: "cancelled",
}


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

    async def purge_subject(self, tenant: str, subject_id: str) -> int:
        removed = 0
        for key in await kv_keys(self.kv, f"{tenant}."):
            found = await kv_get(self.kv, key, self.cls)
            if found is not None and _identity(found[0])[2] == subject_id:
                await self.kv.purge(key)
                removed += 1
        return removed


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
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
