"""Schedules: tenant defaults, capped by the legal limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from retention.config import RetentionSettings
from retention.schedule import default_schedule, hard_deadline


def test_defaults_are_safe() -> None:
    schedule = default_schedule(RetentionSettings())
    assert schedule.photos_days == 30
    assert schedule.models_days == schedule.renders_days == 365


def test_no_setting_outlives_the_hard_cap() -> None:
    settings = RetentionSettings(
        photos_days=5000, models_days=9000, renders_days=4000, inactivity_days=10_000
    )
    schedule = default_schedule(settings)
    cap = settings.hard_cap_days
    assert (
        max(schedule.photos_days, schedule.models_days, schedule.renders_days, schedule.inactivity_days)
        == cap
    )


def test_hard_deadline_is_three_years_after_opening() -> None:
    opened = datetime(2026, 1, 1, tzinfo=UTC)
    assert hard_deadline(opened, RetentionSettings()) == opened + timedelta(days=3 * 365)
