"""The quota policy alone (`likeness.quota_policy`): limits per tenant; which quota refuses, at its bound."""

from __future__ import annotations

from datetime import UTC, datetime

import nats.js.errors
import pytest
from pydantic import ValidationError

from likeness.quota_policy import (
    CONCURRENT_RENDERS,
    CONCURRENT_TRAININGS,
    GPU_SECONDS_PER_DAY,
    RETRY_AFTER_BUSY_SECONDS,
    TRAINING_STEPS,
    Limits,
    QuotaSettings,
    TenantLimits,
    render_refusal,
    seconds_to_utc_midnight,
    training_refusal,
    utc_day,
)
from likeness.quotas import is_per_subject_refusal
from likeness.storage_full import is_storage_full

NOON = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
LIMITS = Limits(concurrent_trainings=2, concurrent_renders=3, gpu_seconds_per_day=100.0, training_steps=500)


def test_overrides_replace_only_the_limits_they_name() -> None:
    settings = QuotaSettings(
        quota_concurrent_renders=16, quotas={"acme": TenantLimits(concurrent_renders=50, training_steps=0)}
    )
    acme, other = settings.limits("acme"), settings.limits("globex")
    assert (acme.concurrent_renders, acme.training_steps) == (50, 0)
    assert acme.concurrent_trainings == other.concurrent_trainings == settings.quota_concurrent_trainings
    assert (other.concurrent_renders, other.training_steps) == (16, settings.quota_training_steps)


def test_an_override_naming_an_unknown_quota_or_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValidationError):
        QuotaSettings.model_validate({"quotas": {"acme": {"concurent_renders": 5}}})
    with pytest.raises(ValidationError):
        QuotaSettings.model_validate({"quotas": {"acme": {"concurrent_renders": -1}}})


@pytest.mark.parametrize(
    ("steps", "in_flight", "spent", "refused_by"),
    [
        (500, 1, 99.9, None),
        (501, 0, 0.0, TRAINING_STEPS),
        (0, 2, 0.0, CONCURRENT_TRAININGS),
        (0, 1, 100.0, GPU_SECONDS_PER_DAY),
        # The cheapest check answers first: the steps cap before the places in flight.
        (501, 2, 100.0, TRAINING_STEPS),
    ],
    ids=["under_every_bound", "steps_over_cap", "trainings_at_bound", "gpu_at_bound", "steps_first"],
)
def test_a_training_is_refused_at_each_bound_and_says_which(
    steps: int, in_flight: int, spent: float, refused_by: str | None
) -> None:
    refusal = training_refusal(LIMITS, steps=steps, in_flight=in_flight, gpu_seconds_today=spent, now=NOON)
    assert (refusal.quota if refusal else None) == refused_by


@pytest.mark.parametrize(
    ("in_flight", "spent", "refused_by"),
    [(2, 0.0, None), (3, 0.0, CONCURRENT_RENDERS), (0, 100.0, GPU_SECONDS_PER_DAY)],
    ids=["under", "renders_at_bound", "gpu_at_bound"],
)
def test_a_render_is_refused_at_each_bound(in_flight: int, spent: float, refused_by: str | None) -> None:
    refusal = render_refusal(LIMITS, in_flight=in_flight, gpu_seconds_today=spent, now=NOON)
    assert (refusal.quota if refusal else None) == refused_by


def test_the_gpu_quota_asks_to_retry_at_utc_midnight_the_others_soon() -> None:
    gpu = render_refusal(LIMITS, in_flight=0, gpu_seconds_today=100.0, now=NOON)
    busy = render_refusal(LIMITS, in_flight=3, gpu_seconds_today=0.0, now=NOON)
    assert (gpu.quota, gpu.retry_after_seconds) == (GPU_SECONDS_PER_DAY, 12 * 3600)  # type: ignore[union-attr]
    assert busy.retry_after_seconds == RETRY_AFTER_BUSY_SECONDS  # type: ignore[union-attr]


def test_a_zero_limit_refuses_everything() -> None:
    closed = Limits(concurrent_trainings=0, concurrent_renders=0, gpu_seconds_per_day=0.0, training_steps=0)
    assert render_refusal(closed, in_flight=0, gpu_seconds_today=0.0, now=NOON) is not None
    assert training_refusal(closed, steps=0, in_flight=0, gpu_seconds_today=0.0, now=NOON) is not None


@pytest.mark.parametrize(
    ("moment", "day", "left"),
    [
        (datetime(2026, 12, 5, 23, 59, 59, 500000, tzinfo=UTC), "20261205", 1),
        (datetime(2026, 12, 6, 0, 0, 0, tzinfo=UTC), "20261206", 24 * 3600),
        (datetime.fromisoformat("2026-12-06T01:30:00+02:00"), "20261205", 30 * 60),
    ],
    ids=["last_half_second", "midnight", "another_zone"],
)
def test_days_are_utc(moment: datetime, day: str, left: int) -> None:
    assert utc_day(moment) == day
    assert seconds_to_utc_midnight(moment) == left


@pytest.mark.parametrize(
    ("description", "per_subject", "full"),
    [
        ("maximum messages per subject exceeded", True, False),
        ("maximum bytes exceeded", False, True),
        ("maximum messages exceeded", False, True),
    ],
    ids=["per_subject", "bytes", "messages"],
)
def test_the_one_training_per_subject_refusal_is_told_apart_from_a_full_stream(
    description: str, per_subject: bool, full: bool
) -> None:
    error = nats.js.errors.APIError(code=503, err_code=10077, description=description)
    assert (is_per_subject_refusal(error), is_storage_full(error)) == (per_subject, full)
