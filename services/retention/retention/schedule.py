"""A subject's retention schedule: tenant defaults, capped by law."""

from __future__ import annotations

from datetime import datetime, timedelta

from likeness.v1 import retention_pb2
from retention.config import RetentionSettings


def default_schedule(settings: RetentionSettings) -> retention_pb2.RetentionSchedule:
    cap = settings.hard_cap_days
    return retention_pb2.RetentionSchedule(
        photos_days=min(settings.photos_days, cap),
        photos_deleted_after_training=settings.photos_deleted_after_training,
        models_days=min(settings.models_days, cap),
        renders_days=min(settings.renders_days, cap),
        inactivity_days=min(settings.inactivity_days, cap),
    )


def hard_deadline(created_at: datetime, settings: RetentionSettings) -> datetime:
    """The moment the whole subject is erased, whatever else happens."""
    return created_at + timedelta(days=settings.hard_cap_days)
