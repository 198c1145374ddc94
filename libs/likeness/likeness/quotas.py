"""Per-tenant quotas on GPU work: what a tenant may have queued or running, and spend per UTC day.

The serve roles of trainer and renderer check these where a job is accepted (`SubmitTraining`,
`SubmitRender`) and refuse with gRPC RESOURCE_EXHAUSTED, machine code `quota_exceeded`, the quota's name
and a retry hint in trailing metadata (`refuse`); the gateway answers 429 `quota_exceeded` naming the quota,
with `Retry-After`.

- `concurrent_trainings` / `concurrent_renders`: the tenant's messages still in the work-queue stream
  (a work queue keeps a job's message until its worker acks or terminates it, i.e. until it is terminal),
  counted by the server per NATS subject (`bus.stream_subject_counts`). The bound is exact across serve
  replicas: a check also reads the `Fence` (the sequence of the tenant's newest job message), and the
  job is published only if that is still the newest (`Nats-Expected-Last-Subject-Sequence` over the
  tenant's subjects, checked by the server when it stores the message). Of two submits racing, the
  second's publish is refused; it checks again against what the first queued (`publish_admitted`). In
  one replica a tenant's submits take turns (`admitting`), so only replicas race for the fence.
- `gpu_seconds_per_day`: the seconds workers held the tenant's jobs today (UTC), from `likeness.gpu_usage`;
  refused until UTC midnight once reached (a job that runs over finishes: it is not cut short).
- `training_steps`: a training asking for more steps than the tenant's cap (0, the preset, is always
  allowed: the preset has its own ceiling).
- `active_training_per_subject`: one queued or running training per person, made atomic by the train
  stream itself (`max_msgs_per_subject=1` with `discard_new_per_subject`, `likeness.provisioning`).

Limits come from settings (`QuotaSettings`): defaults for every tenant, and per-tenant overrides in
`LIKENESS_QUOTAS`, a JSON map `{"<tenant>": {"concurrent_renders": 50, ...}}`.
"""

from __future__ import annotations

import asyncio
import json
import random
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

import grpc
import nats.js.errors
from prometheus_client import Counter

from likeness.bus import MSG_ID_HEADER, Bus, job_nats_subject, stream_subject_counts
from likeness.gpu_usage import tenant_gpu_seconds
from likeness.provisioning import GPU_USAGE_BUCKET, RENDER_STREAM, TRAIN_STREAM
from likeness.quota_policy import (
    ACTIVE_TRAINING_PER_SUBJECT,
    ACTIVE_TRAINING_REFUSAL,
    CONCURRENT_RENDERS,
    CONCURRENT_TRAININGS,
    GPU_SECONDS_PER_DAY,
    QUOTA_EXCEEDED,
    QUOTA_METADATA_KEY,
    RETRY_AFTER_METADATA_KEY,
    TRAINING_STEPS,
    Limits,
    QuotaSettings,
    Refusal,
    render_refusal,
    training_refusal,
    utc_day,
)
from likeness.rpc_errors import abort
from likeness.v1 import common_pb2

QUOTA_REFUSALS = Counter(
    "likeness_quota_refusals",
    "Submissions refused by a tenant quota, by tenant and quota (never a subject)",
    ["tenant", "quota"],
)


#: The quotas a submission of each kind can be refused by (their refusal series start at 0, below).
KIND_QUOTAS = {
    "train": (CONCURRENT_TRAININGS, GPU_SECONDS_PER_DAY, TRAINING_STEPS, ACTIVE_TRAINING_PER_SUBJECT),
    "render": (CONCURRENT_RENDERS, GPU_SECONDS_PER_DAY),
}


Context = grpc.aio.ServicerContext[object, object]


async def refuse(context: Context, tenant: str, refusal: Refusal) -> NoReturn:
    """Counts the refusal (tenant and quota only) and aborts the call with it."""
    QUOTA_REFUSALS.labels(tenant=tenant, quota=refusal.quota).inc()
    await abort(
        context,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        QUOTA_EXCEEDED,
        refusal.message,
        extra={QUOTA_METADATA_KEY: refusal.quota, RETRY_AFTER_METADATA_KEY: str(refusal.retry_after_seconds)},
    )


#: nats-server's JSStreamStoreFailedF, also the code of a refusal by a per-subject message bound.
_STORE_FAILED = 10077


def is_per_subject_refusal(error: BaseException) -> bool:
    """Whether a publish was refused by the stream's per-subject bound (`discard_new_per_subject`): the
    subject already has its one active training. Told apart from a full stream (`likeness.storage_full`)."""
    return (
        isinstance(error, nats.js.errors.APIError)
        and error.err_code == _STORE_FAILED
        and "per subject" in str(error.description or "")
    )


#: nats-server's JSStreamWrongLastSequenceErrF: an expected last sequence did not hold.
_WRONG_LAST_SEQUENCE = 10071
#: nats-server's JSNoMessageFoundErr: no message matches a get.
_NO_MESSAGE_FOUND = 10037
#: How often a submit checks again after another of its tenant's submits moved the fence (in one replica
#: a tenant's submits take turns, `TenantQuotas.admitting`: the fence is raced by the replicas only).
FENCE_ATTEMPTS = 32
#: Locks a replica's submits take turns on, by tenant (striped: bounded, whatever the number of tenants).
ADMISSION_LOCKS = 64


@dataclass(frozen=True)
class Fence:
    """The tenant's jobs of one kind as a quota check saw them: the sequence of the newest message on the
    tenant's subjects (0: none). A publish carrying it (`headers`) is stored only if no job of the tenant
    was queued, nor its newest removed, since: what the check counted is still what is queued."""

    subject_filter: str
    last_sequence: int

    def headers(self) -> dict[str, str]:
        return {
            "Nats-Expected-Last-Subject-Sequence": str(self.last_sequence),
            "Nats-Expected-Last-Subject-Sequence-Subject": self.subject_filter,
        }


def is_fence_moved(error: BaseException) -> bool:
    """Whether a publish was refused because its `Fence` no longer holds."""
    return isinstance(error, nats.js.errors.APIError) and error.err_code == _WRONG_LAST_SEQUENCE


async def newest_sequence(bus: Bus, stream: str, subject_filter: str) -> int:
    """The sequence of the newest message of `stream` on `subject_filter` (wildcards allowed), 0 if none."""
    request = json.dumps({"last_by_subj": subject_filter}).encode()
    reply = await bus.js._nc.request(f"{bus.js._prefix}.STREAM.MSG.GET.{stream}", request, timeout=5)
    response = json.loads(reply.data)
    error = response.get("error")
    if error:
        if error.get("err_code") == _NO_MESSAGE_FOUND:
            return 0
        raise nats.js.errors.APIError.from_error(error)
    return int(response["message"]["seq"])


@dataclass(frozen=True)
class TenantUsage:
    """What a tenant has of one kind of job in flight and spent today, beside its limits."""

    tenant: str
    day: str
    #: The tenant's jobs queued or running, per NATS subject (`job.<kind>.<tenant>...`).
    in_flight_by_subject: dict[str, int]
    gpu_seconds_today: float
    limits: Limits
    #: Read before the counts, so a job queued in between moves it and the publish is checked again.
    fence: Fence

    @property
    def in_flight(self) -> int:
        return sum(self.in_flight_by_subject.values())


class TenantQuotas:
    """A serve role's quota checks for one kind of job (`train` or `render`), read from the servers."""

    def __init__(self, bus: Bus, settings: QuotaSettings, kind: str) -> None:
        assert kind in ("train", "render"), kind
        self.bus = bus
        self.settings = settings
        self.kind = kind
        self.stream = TRAIN_STREAM if kind == "train" else RENDER_STREAM
        self._admission_locks = [asyncio.Lock() for _ in range(ADMISSION_LOCKS)]

    def admitting(self, tenant: str) -> asyncio.Lock:
        """Held by a submit from its quota check to its job's publish: a burst of one tenant's submits to
        this replica takes turns here instead of racing each other for the fence, which then orders only
        the replicas' submits. Two tenants may share a lock (striped), never a tenant two."""
        return self._admission_locks[zlib.crc32(tenant.encode()) % ADMISSION_LOCKS]

    async def usage(self, tenant: str, now: datetime | None = None) -> TenantUsage:
        moment = now or datetime.now(UTC)
        day = utc_day(moment)
        # `>`: whatever tokens follow the tenant (the subject, a priority), every job of the tenant counts.
        # Messages still in the work-queue stream: a work queue keeps a job's until it is terminal.
        tenant_jobs = f"job.{self.kind}.{tenant}.>"
        fence = Fence(tenant_jobs, await newest_sequence(self.bus, self.stream, tenant_jobs))
        # After the fence, the counts and the day's GPU-seconds at once: a submit holds its tenant's turn
        # (`admitting`) while it reads them, so every round trip saved here is one the next submit gains.
        in_flight, spent = await asyncio.gather(
            stream_subject_counts(self.bus.js, self.stream, tenant_jobs),
            self._gpu_seconds(tenant, day),
        )
        return TenantUsage(tenant, day, in_flight, spent, self.settings.limits(tenant), fence)

    async def _gpu_seconds(self, tenant: str, day: str) -> float:
        return await tenant_gpu_seconds(await self.bus.kv(GPU_USAGE_BUCKET), tenant, day)

    async def report(self, tenant: str) -> common_pb2.QuotaUsage:
        """The tenant's usage of this kind of job, as the usage API reports it."""
        usage = await self.usage(tenant)
        limits = usage.limits
        training = self.kind == "train"
        return common_pb2.QuotaUsage(
            day=usage.day,
            jobs_in_flight=usage.in_flight,
            max_jobs_in_flight=limits.concurrent_trainings if training else limits.concurrent_renders,
            gpu_seconds_today=usage.gpu_seconds_today,
            max_gpu_seconds_per_day=limits.gpu_seconds_per_day,
            max_training_steps=limits.training_steps if training else 0,
        )

    def _count_from_zero(self, tenant: str) -> None:
        """Creates the tenant's refusal series of this kind at 0 when it first submits: a rate or increase
        over them (the refusal alert) then sees the first refusal, and a tenant never refused shows 0, not
        nothing. Bounded by tenants times quotas, as the series themselves are."""
        for quota in KIND_QUOTAS[self.kind]:
            QUOTA_REFUSALS.labels(tenant=tenant, quota=quota)

    async def training_refusal(
        self, tenant: str, subject_id: str, steps: int
    ) -> tuple[Refusal | None, Fence]:
        """Why a quota does not allow this training now (None: it does), and the fence to publish it with."""
        now = datetime.now(UTC)
        usage = await self.usage(tenant, now)
        refusal = training_refusal(
            usage.limits,
            steps=steps,
            in_flight=usage.in_flight,
            gpu_seconds_today=usage.gpu_seconds_today,
            now=now,
        )
        if refusal is None and usage.in_flight_by_subject.get(job_nats_subject("train", tenant, subject_id)):
            # Answered here (from the same snapshot of the tenant's subjects) for a clear refusal before any
            # record is written; the stream's per-subject bound is what makes it hold against two submits
            # at once (`is_per_subject_refusal`).
            refusal = ACTIVE_TRAINING_REFUSAL
        return refusal, usage.fence

    async def render_refusal(self, tenant: str) -> tuple[Refusal | None, Fence]:
        """Why a quota does not allow a render now (None: it does), and the fence to publish it with."""
        now = datetime.now(UTC)
        usage = await self.usage(tenant, now)
        refusal = render_refusal(
            usage.limits, in_flight=usage.in_flight, gpu_seconds_today=usage.gpu_seconds_today, now=now
        )
        return refusal, usage.fence

    async def check(
        self, context: Context, tenant: str, judge: Callable[[], Awaitable[tuple[Refusal | None, Fence]]]
    ) -> Fence:
        """Refuses (aborting the call) what `judge` refuses; else the fence to publish the job with."""
        self._count_from_zero(tenant)
        refusal, fence = await judge()
        if refusal is not None:
            await refuse(context, tenant, refusal)
        return fence

    async def publish_admitted(
        self,
        context: Context,
        tenant: str,
        fence: Fence,
        publish: Callable[[Fence], Awaitable[None]],
        judge: Callable[[], Awaitable[tuple[Refusal | None, Fence]]],
        withdraw: Callable[[], Awaitable[None]],
    ) -> None:
        """Publishes the job under `fence`; while another submit of the tenant moves it first, checks the
        quotas again (`judge`) and publishes under the new fence, or withdraws the job's record (`withdraw`)
        and refuses. A tenant whose submits keep racing past `FENCE_ATTEMPTS` is asked to retry (429)."""
        for attempt in range(1, FENCE_ATTEMPTS + 1):
            try:
                await publish(fence)
                return
            except nats.js.errors.APIError as error:
                if not is_fence_moved(error):
                    raise
            refusal, fence = await judge()
            if refusal is not None:
                await withdraw()
                await refuse(context, tenant, refusal)
            # A growing, random pause spreads the racing replicas apart (not a secret: `random` will do).
            await asyncio.sleep(random.uniform(0.0, 0.005 * attempt))  # noqa: S311
        await withdraw()
        await refuse(context, tenant, self._racing_refusal())

    def _racing_refusal(self) -> Refusal:
        """Charged to the kind's concurrency quota: the tenant's own submits at once kept moving the fence."""
        quota = CONCURRENT_TRAININGS if self.kind == "train" else CONCURRENT_RENDERS
        return Refusal(quota, "Too many of the tenant's submissions at once; retry in a moment.", 1)

    async def release_queued(self, tenant: str, subject_id: str, job_id: str) -> bool:
        """Removes a cancelled training's message if it is still the subject's queued one, so the subject's
        one place is free at once instead of when a worker reaches and skips it (a cancel on request, or a
        withdrawn grant: `trainer.server`). True if removed."""
        nats_subject = job_nats_subject(self.kind, tenant, subject_id)
        try:
            message = await self.bus.js.get_last_msg(self.stream, nats_subject)
        except nats.js.errors.NotFoundError:
            return False
        if (message.headers or {}).get(MSG_ID_HEADER) != job_id or message.seq is None:
            return False
        try:
            return bool(await self.bus.js.delete_msg(self.stream, message.seq))
        except nats.js.errors.NotFoundError:
            return False  # a worker acknowledged it in between
