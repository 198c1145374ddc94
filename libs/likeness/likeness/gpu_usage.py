"""GPU-seconds per tenant per UTC day: what the workers spend, kept where the serve roles can read it.

A GPU-second is a second a worker holds one of the tenant's jobs (`QueueWorker.handle` wraps `run_job` in
`GpuUsage.held`), whatever the job's end. Each worker process writes its own running totals, one key per
day, tenant and process, in the `gpu_usage` bucket: `<day>.<tenant>.<kind>.<instance>` (`kind` is `train`
or `render`, `instance` a random id per process start). So no two writers share a key (no compare-and-set,
no contention), a trainer worker may write only `*.*.train.*` (`likeness.provisioning`), and a restarted
process starts a key of its own instead of having to read the one it left. The bucket's TTL (two days)
drops yesterday's keys; a tenant's total for a day is the sum of its keys (`tenant_gpu_seconds`).

A job is charged while it runs, every `charge_interval_seconds` (15 s), and once more when it ends: a
long training shows in its tenant's usage within that interval, so the serve roles refuse the tenant's next
submissions as soon as the day's quota is spent rather than hours later when the training ends. Each
charge counts to the UTC day it is made on, so a job that crosses midnight splits its seconds between the
two days. A quota bounds what is accepted, never cuts a running job short: the jobs already running when
it is reached finish. Writing the total is best effort: a worker that cannot write it logs and goes on (the
next write carries the whole total again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from nats.js.kv import KeyValue
from prometheus_client import Counter

from likeness.bus import Bus, kv_entries
from likeness.provisioning import GPU_USAGE_BUCKET, RENDER_STREAM, TRAIN_STREAM
from likeness.quota_policy import utc_day

log = logging.getLogger(__name__)

GPU_SECONDS = Counter(
    "likeness_tenant_gpu_seconds",
    "Seconds GPU workers held a tenant's jobs, by tenant and queue (never a subject)",
    ["tenant", "queue"],
)


def usage_kind(stream: str) -> str:
    """The key's `kind` token of a work queue's jobs (what the worker's NATS user may write)."""
    return {TRAIN_STREAM: "train", RENDER_STREAM: "render"}.get(stream, stream.lower())


def usage_key(day: str, tenant: str, kind: str, instance: str) -> str:
    return f"{day}.{tenant}.{kind}.{instance}"


class GpuUsage:
    """One worker process's running totals (`kind`: `train` or `render`), written to its own keys."""

    def __init__(
        self,
        bus: Bus,
        kind: str,
        instance: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], datetime] = lambda: datetime.now(UTC),
        charge_interval_seconds: float = 15.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.bus = bus
        self.kind = kind
        self.instance = instance or secrets.token_hex(6)
        self.charge_interval_seconds = charge_interval_seconds
        self._clock = clock
        self._today = today
        self._sleep = sleep
        self._totals: dict[tuple[str, str], float] = {}
        self._writing = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def held(self, tenant: str) -> AsyncIterator[None]:
        """Counts the block's duration to `tenant`, however it ends: charged every
        `charge_interval_seconds` while the block runs, and the rest when it ends."""
        charged_until = self._clock()

        async def charge_so_far() -> None:
            nonlocal charged_until
            now = self._clock()
            # The mark moves before the write: `add` keeps the seconds in the running total even when the
            # write fails or is cancelled, and the next write carries them.
            seconds, charged_until = now - charged_until, now
            await self.add(tenant, seconds)

        async def charge_while_held() -> None:
            while True:
                await self._sleep(self.charge_interval_seconds)
                await charge_so_far()

        charging = asyncio.create_task(charge_while_held())
        try:
            yield
        finally:
            charging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await charging
            await charge_so_far()

    async def add(self, tenant: str, seconds: float) -> None:
        day = utc_day(self._today())
        key = (day, tenant)
        # Totals of other days are not written again: only today's key is kept current.
        self._totals = {found: total for found, total in self._totals.items() if found[0] == day}
        self._totals[key] = self._totals.get(key, 0.0) + max(0.0, seconds)
        GPU_SECONDS.labels(tenant=tenant, queue=self.kind).inc(max(0.0, seconds))
        # One write at a time, each of the total as it is when written: with jobs charged while they run,
        # two writes of one key can overlap, and the older total must not land last.
        async with self._writing:
            total = self._totals.get(key)
            if total is None:
                return  # a new UTC day began meanwhile; only its keys are written now
            try:
                kv = await self.bus.kv(GPU_USAGE_BUCKET)
                await kv.put(usage_key(day, tenant, self.kind, self.instance), f"{total:.3f}".encode())
            except Exception:
                log.warning("could not record GPU usage", extra={"queue": self.kind})


async def tenant_gpu_seconds(kv: KeyValue, tenant: str, day: str) -> float:
    """The tenant's GPU-seconds of `day` (`utc_day`), summed over every worker's key."""
    total = 0.0
    for _, value, _ in await kv_entries(kv, f"{day}.{tenant}."):
        with contextlib.suppress(ValueError):
            total += float(value.decode("ascii", "replace"))
    return total
