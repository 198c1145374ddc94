"""The quota policy, pure: each tenant's limits (defaults and overrides from settings) and which quota, if
any, refuses a submission given what the tenant has in flight and has spent today (`likeness.quotas`
enforces it; this module reads no server, so it is tested alone and imported by `likeness.config`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

QUOTA_EXCEEDED = "quota_exceeded"
#: Trailing metadata of a refusal: which quota, and the seconds after which a retry may pass.
QUOTA_METADATA_KEY = "likeness-quota"
RETRY_AFTER_METADATA_KEY = "likeness-retry-after"

CONCURRENT_TRAININGS = "concurrent_trainings"
CONCURRENT_RENDERS = "concurrent_renders"
GPU_SECONDS_PER_DAY = "gpu_seconds_per_day"
TRAINING_STEPS = "training_steps"
ACTIVE_TRAINING_PER_SUBJECT = "active_training_per_subject"
QUOTAS = (
    CONCURRENT_TRAININGS,
    CONCURRENT_RENDERS,
    GPU_SECONDS_PER_DAY,
    TRAINING_STEPS,
    ACTIVE_TRAINING_PER_SUBJECT,
)

#: A retry hint for a quota on jobs in flight: about the time a short job takes to finish and free a place.
RETRY_AFTER_BUSY_SECONDS = 30
#: A steps cap does not pass on its own; the hint is the time an operator would take to raise it.
RETRY_AFTER_CAP_SECONDS = 3600


class TenantLimits(BaseModel):
    """One tenant's limits (every field optional in an override: unset ones keep the defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    concurrent_trainings: int | None = Field(default=None, ge=0)
    concurrent_renders: int | None = Field(default=None, ge=0)
    gpu_seconds_per_day: float | None = Field(default=None, ge=0)
    training_steps: int | None = Field(default=None, ge=0)


@dataclass(frozen=True)
class Limits:
    concurrent_trainings: int
    concurrent_renders: int
    gpu_seconds_per_day: float
    training_steps: int


class QuotaSettings(BaseModel):
    """The quota fields of a job service's settings (`likeness.config.JobQueueSettings` mixes them in)."""

    #: Trainings queued or running at once per tenant.
    quota_concurrent_trainings: int = Field(default=4, ge=0)
    #: Renders queued or running at once per tenant.
    quota_concurrent_renders: int = Field(default=16, ge=0)
    #: GPU-seconds (workers holding the tenant's jobs) per tenant per UTC day.
    quota_gpu_seconds_per_day: float = Field(default=8 * 3600.0, ge=0)
    #: The most steps a training may ask for (0 asks for the preset, always allowed).
    quota_training_steps: int = Field(default=3000, ge=0)
    #: Per-tenant overrides (`LIKENESS_QUOTAS`, JSON): `{"<tenant>": {"concurrent_renders": 50}}`.
    quotas: dict[str, TenantLimits] = Field(default_factory=dict)

    def limits(self, tenant: str) -> Limits:
        override = self.quotas.get(tenant, TenantLimits())
        return Limits(
            concurrent_trainings=_pick(override.concurrent_trainings, self.quota_concurrent_trainings),
            concurrent_renders=_pick(override.concurrent_renders, self.quota_concurrent_renders),
            gpu_seconds_per_day=_pick(override.gpu_seconds_per_day, self.quota_gpu_seconds_per_day),
            training_steps=_pick(override.training_steps, self.quota_training_steps),
        )


T = TypeVar("T", int, float)


def _pick(override: T | None, default: T) -> T:
    return default if override is None else override


@dataclass(frozen=True)
class Refusal:
    quota: str
    message: str
    retry_after_seconds: int


def utc_day(now: datetime) -> str:
    """The UTC day a moment counts to, as GPU-seconds are kept (`20261205`)."""
    return now.astimezone(UTC).strftime("%Y%m%d")


def seconds_to_utc_midnight(now: datetime) -> int:
    """Whole seconds until the next UTC day begins (at least 1: a `Retry-After` of 0 means nothing)."""
    moment = now.astimezone(UTC)
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - moment).total_seconds() + 0.999))


def gpu_refusal(limits: Limits, gpu_seconds_today: float, now: datetime) -> Refusal | None:
    if gpu_seconds_today < limits.gpu_seconds_per_day:
        return None
    return Refusal(
        GPU_SECONDS_PER_DAY,
        f"The tenant has used its {limits.gpu_seconds_per_day:g} GPU-seconds for today (UTC).",
        seconds_to_utc_midnight(now),
    )


def training_refusal(
    limits: Limits, *, steps: int, in_flight: int, gpu_seconds_today: float, now: datetime
) -> Refusal | None:
    """Why a training may not be accepted now, the cheapest checks first (None: it may)."""
    if steps > limits.training_steps:
        return Refusal(
            TRAINING_STEPS,
            f"steps above the tenant's cap of {limits.training_steps}.",
            RETRY_AFTER_CAP_SECONDS,
        )
    if in_flight >= limits.concurrent_trainings:
        return Refusal(
            CONCURRENT_TRAININGS,
            f"The tenant has {limits.concurrent_trainings} trainings queued or running, its most.",
            RETRY_AFTER_BUSY_SECONDS,
        )
    return gpu_refusal(limits, gpu_seconds_today, now)


def render_refusal(
    limits: Limits, *, in_flight: int, gpu_seconds_today: float, now: datetime
) -> Refusal | None:
    if in_flight >= limits.concurrent_renders:
        return Refusal(
            CONCURRENT_RENDERS,
            f"The tenant has {limits.concurrent_renders} renders queued or running, its most.",
            RETRY_AFTER_BUSY_SECONDS,
        )
    return gpu_refusal(limits, gpu_seconds_today, now)


ACTIVE_TRAINING_REFUSAL = Refusal(
    ACTIVE_TRAINING_PER_SUBJECT,
    "This subject already has a training queued or running: wait for it, or cancel it.",
    RETRY_AFTER_BUSY_SECONDS,
)
