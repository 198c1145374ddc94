"""Per-tenant quotas on GPU work: what a tenant may have queued or running, and spend per UTC day.

The serve roles of trainer and renderer check these where a job is accepted (`SubmitTraining`,
`SubmitRender`) and refuse with gRPC RESOURCE_EXHAUSTED, machine code `quota_exceeded`, the quota's name
and a retry hint in trailing metadata (`refuse`); the gateway answers 429 `quota_exceeded` naming the quota,
with `Retry-After`.

- `concurrent_trainings` / `concurrent_renders`: the tenant's messages still in the work-queue stream
  (a work queue keeps a job's message until its worker acks or terminates it, i.e. until it is terminal),
  counted by the server per NATS subject (`bus.stream_subject_counts`). Two submits racing may both
  pass: the bound holds within the submits in flight at one moment.
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


@dataclass(frozen=True)
class TenantUsage:
    """What a tenant has of one kind of job in flight and spent today, beside its limits."""

    tenant: str
    day: str
    #: The tenant's jobs queued or running, per NATS subject (`job.<kind>.<tenant>...`).
    in_flight_by_subject: dict[str, int]
    gpu_seconds_today: float
    limits: Limits

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

    async def usage(self, tenant: str, now: datetime | None = None) -> TenantUsage:
        moment = now or datetime.now(UTC)
        day = utc_day(moment)
        # `>`: whatever tokens follow the tenant (the subject, a priority), every job of the tenant counts.
        # Messages still in the work-queue stream: a work queue keeps a job's until it is terminal.
        in_flight = await stream_subject_counts(self.bus.js, self.stream, f"job.{self.kind}.{tenant}.>")
        spent = await tenant_gpu_seconds(await self.bus.kv(GPU_USAGE_BUCKET), tenant, day)
        return TenantUsage(tenant, day, in_flight, spent, self.settings.limits(tenant))

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

    async def check_training(self, context: Context, tenant: str, subject_id: str, steps: int) -> None:
        """Refuses (aborting the call) a training that a quota does not allow now."""
        self._count_from_zero(tenant)
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
        if refusal is not None:
            await refuse(context, tenant, refusal)

    async def check_render(self, context: Context, tenant: str) -> None:
        self._count_from_zero(tenant)
        now = datetime.now(UTC)
        usage = await self.usage(tenant, now)
        refusal = render_refusal(
            usage.limits, in_flight=usage.in_flight, gpu_seconds_today=usage.gpu_seconds_today, now=now
        )
        if refusal is not None:
            await refuse(context, tenant, refusal)

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
