"""GPU-seconds per tenant per UTC day: what the workers spend, kept where the serve roles can read it.

A GPU-second is a second a worker holds one of the tenant's jobs (`QueueWorker.handle` wraps `run_job` in
`GpuUsage.held`), whatever the job's end. Each worker process writes its own running totals, one key per
day, tenant and process, in the `gpu_usage` bucket: `<day>.<tenant>.<kind>.<instance>` (`kind` is `train`
or `render`, `instance` a random id per process start). So no two writers share a key (no compare-and-set,
no contention), a trainer worker may write only `*.*.train.*` (`likeness.provisioning`), and a restarted
process starts a key of its own instead of having to read the one it left. The bucket's TTL (two days)
drops yesterday's keys; a tenant's total for a day is the sum of its keys (`tenant_gpu_seconds`).

A job is counted when it ends (a job that crosses midnight counts to the day it ended on), so a day's
quota can be exceeded by the jobs already running when it is reached: a quota bounds what is accepted,
never cuts a running job short. Writing the total is best effort: a worker that cannot write it logs and
goes on (its next job's write carries the whole total again).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
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
    ) -> None:
        self.bus = bus
        self.kind = kind
        self.instance = instance or secrets.token_hex(6)
        self._clock = clock
        self._today = today
        self._totals: dict[tuple[str, str], float] = {}

    @contextlib.asynccontextmanager
    async def held(self, tenant: str) -> AsyncIterator[None]:
        """Counts the block's duration to `tenant`, however it ends."""
        started = self._clock()
        try:
            yield
        finally:
            await self.add(tenant, self._clock() - started)

    async def add(self, tenant: str, seconds: float) -> None:
        day = utc_day(self._today())
        key = (day, tenant)
        # Totals of other days are not written again: only today's key is kept current.
        self._totals = {found: total for found, total in self._totals.items() if found[0] == day}
        self._totals[key] = self._totals.get(key, 0.0) + max(0.0, seconds)
        GPU_SECONDS.labels(tenant=tenant, queue=self.kind).inc(max(0.0, seconds))
        try:
            kv = await self.bus.kv(GPU_USAGE_BUCKET)
            total = f"{self._totals[key]:.3f}".encode()
            await kv.put(usage_key(day, tenant, self.kind, self.instance), total)
        except Exception:
            log.warning("could not record GPU usage", extra={"queue": self.kind})


async def tenant_gpu_seconds(kv: KeyValue, tenant: str, day: str) -> float:
    """The tenant's GPU-seconds of `day` (`utc_day`), summed over every worker's key."""
    total = 0.0
    for _, value, _ in await kv_entries(kv, f"{day}.{tenant}."):
        with contextlib.suppress(ValueError):
            total += float(value.decode("ascii", "replace"))
    return total
