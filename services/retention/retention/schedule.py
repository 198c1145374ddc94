"""A subject's retention schedule: the tenant's choice (or the service defaults), capped by law.

The schedule in force when a subject is opened is stored with the subject and governs it for life, so a
person keeps the terms they consented under; a tenant's later change applies to subjects opened after it.
Whatever anyone sets, nothing outlives `hard_cap_days` after opening (BIPA's three years).
"""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta

from likeness.timeutil import from_timestamp
from likeness.v1 import retention_pb2
from retention.config import RetentionSettings

Schedule = retention_pb2.RetentionSchedule
_DAY_FIELDS = ("photos_days", "models_days", "renders_days", "inactivity_days")


class ScheduleError(ValueError):
    """A schedule a tenant may not set (the message says why)."""


def default_schedule(settings: RetentionSettings) -> Schedule:
    cap = settings.hard_cap_days
    return Schedule(
        photos_days=min(settings.photos_days, cap),
        photos_deleted_after_training=settings.photos_deleted_after_training,
        models_days=min(settings.models_days, cap),
        renders_days=min(settings.renders_days, cap),
        inactivity_days=min(settings.inactivity_days, cap),
    )


def effective_schedule(tenant_schedule: Schedule | None, settings: RetentionSettings) -> Schedule:
    """The tenant's schedule with its zeros ("the default") filled in and every period capped."""
    schedule = default_schedule(settings)
    if tenant_schedule is None:
        return schedule
    for name in _DAY_FIELDS:
        chosen = getattr(tenant_schedule, name)
        if chosen:
            setattr(schedule, name, min(chosen, settings.hard_cap_days))
    schedule.photos_deleted_after_training = tenant_schedule.photos_deleted_after_training
    return schedule


def validate_tenant_schedule(schedule: Schedule) -> None:
    for name in _DAY_FIELDS:
        if getattr(schedule, name) < 0:
            raise ScheduleError(f"{name} cannot be negative (0 means the default)")


def hard_deadline(created_at: datetime, settings: RetentionSettings) -> datetime:
    """The moment the whole subject is erased, whatever else happens."""
    return created_at + timedelta(days=settings.hard_cap_days)


def photo_deadline(schedule: Schedule, uploaded_at: datetime) -> datetime:
    return uploaded_at + timedelta(days=schedule.photos_days)


def model_deadline(schedule: Schedule, trained_at: datetime) -> datetime:
    return trained_at + timedelta(days=schedule.models_days)


def render_deadline(schedule: Schedule, rendered_at: datetime) -> datetime:
    return rendered_at + timedelta(days=schedule.renders_days)


def subject_deadline(subject: retention_pb2.Subject) -> tuple[datetime, str] | None:
    """When the whole subject is due for erasure and why ("hard_cap" or "inactivity"); None if unknown."""
    candidates: list[tuple[datetime, str]] = []
    hard = from_timestamp(subject.delete_by)
    if hard is not None:
        candidates.append((hard, "hard_cap"))
    last = from_timestamp(subject.last_activity_at) or from_timestamp(subject.created_at)
    if last is not None and subject.retention.inactivity_days > 0:
        candidates.append((last + timedelta(days=subject.retention.inactivity_days), "inactivity"))
    return min(candidates) if candidates else None


def _days(count: int) -> str:
    return "1 day" if count == 1 else f"{count} days"


def _row(label: str, text: str) -> str:
    return textwrap.fill(text, width=100, initial_indent=f"  {label:<18}", subsequent_indent=" " * 20)


def describe_policy(
    tenant: str, schedule: Schedule, settings: RetentionSettings, *, tenant_specific: bool
) -> str:
    """The schedule as a policy a person can read (what `GET /v1/retention-policy` answers in words)."""
    source = "set by the tenant" if tenant_specific else "service defaults: the tenant has set none"
    cap = settings.hard_cap_days
    photos = f"{_days(schedule.photos_days)} after upload"
    if schedule.photos_deleted_after_training:
        photos = f"as soon as a model of the person has been trained, and at the latest {photos}"
    intro = (
        "Everything stored of a person is encrypted under a key of that person alone. Deleting means "
        "deleting every stored version. Erasing a person destroys that key first, which makes every "
        "remaining copy unreadable at once, then deletes their data, records and event history."
    )
    rows = [
        ("Photos", f"Photos and face templates are deleted {photos}."),
        (
            "Trained models",
            f"Deleted {_days(schedule.models_days)} after training; what a failed or cancelled training "
            "left behind is deleted at once.",
        ),
        ("Headshots", f"Deleted {_days(schedule.renders_days)} after they are made."),
        (
            "Inactivity",
            f"The whole person, key included, is erased after {_days(schedule.inactivity_days)} without "
            "activity (uploads, trainings, renders).",
        ),
        (
            "Legal limit",
            f"Nothing is kept longer than {_days(cap)} after the person was added, whatever the settings.",
        ),
        (
            "On request",
            "Erasure starts at once: the key is destroyed within seconds, and a signed erasure receipt is "
            "issued when the purge is complete.",
        ),
        (
            "Backups",
            "Key backups (Vault snapshots) expire within "
            f"{_days(settings.vault_snapshot_retention_days)}; each receipt states the date by which they "
            "are gone.",
        ),
    ]
    lines = [f'Retention policy of tenant "{tenant}" ({source})', "", textwrap.fill(intro, width=100), ""]
    lines += [_row(label, text) for label, text in rows]
    lines += [
        "",
        textwrap.fill(
            "Each person keeps the schedule in force when they were added; changes apply to people added "
            "later.",
            width=100,
        ),
    ]
    return "\n".join(lines)
