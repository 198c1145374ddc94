"""Retention settings: default schedules, the legal cap, and how erasure retries."""

from __future__ import annotations

from functools import lru_cache

from likeness.config import CommonSettings


class RetentionSettings(CommonSettings):
    service_name: str = "retention"
    #: Default schedule for a tenant's subjects (days; see RetentionSchedule).
    photos_days: int = 30
    photos_deleted_after_training: bool = False
    models_days: int = 365
    renders_days: int = 365
    inactivity_days: int = 365
    #: Whatever a tenant configures, nothing is kept longer than this (BIPA's three-year limit).
    hard_cap_days: int = 3 * 365
    #: How long Vault snapshots (which still hold a destroyed key) are kept; stated on erasure receipts.
    vault_snapshot_retention_days: int = 30
    erasure_retry_initial_seconds: float = 0.5
    erasure_retry_max_seconds: float = 30.0
    sweep_interval_seconds: float = 300.0


@lru_cache(maxsize=1)
def get_settings() -> RetentionSettings:
    return RetentionSettings()
