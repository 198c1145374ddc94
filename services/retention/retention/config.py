"""Retention settings: default schedules, the legal cap, the reaper, erasure retries and receipt signing."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator

from likeness.config import AuditedSettings


class RetentionSettings(AuditedSettings):
    key_secrets: ClassVar[tuple[str, ...]] = ("hmac_secret", "audit_pseudonym_secret")

    service_name: str = "retention"
    #: Key for keyed HMACs of identifiers that must never appear in clear (audit records, external refs).
    #: Retention alone holds it: with it, an external ref's hash could be reversed by dictionary.
    hmac_secret: SecretStr = SecretStr("likeness-dev")
    #: Default schedule for subjects of tenants that set none (days; see RetentionSchedule).
    photos_days: int = Field(default=30, ge=1)
    photos_deleted_after_training: bool = False
    models_days: int = Field(default=365, ge=1)
    renders_days: int = Field(default=365, ge=1)
    inactivity_days: int = Field(default=365, ge=1)
    #: Whatever a tenant configures, nothing is kept longer than this (BIPA's three-year limit).
    hard_cap_days: int = Field(default=3 * 365, ge=1, le=3 * 365)
    #: How long Vault snapshots (which still hold a destroyed key) are kept; stated on erasure receipts.
    vault_snapshot_retention_days: int = Field(default=30, ge=0)
    erasure_retry_initial_seconds: float = 0.5
    erasure_retry_max_seconds: float = 30.0
    #: A full pass of the reaper (every deadline and subject); deadlines it knows of fire on time between.
    sweep_interval_seconds: float = 300.0
    #: After an erasure completes, its subject's prefix and events are checked again this much later, for
    #: what a worker was still writing when the key went (it is noise, but it must go too).
    erasure_rescan_seconds: float = 10.0
    #: The erasure notice (`subject.erased`, which names the subject) is forgotten once every service has
    #: acknowledged it; one a service never acknowledges (down for good) is forgotten after this anyway.
    erasure_notice_max_hours: float = Field(default=168.0, gt=0)
    #: Orphan sweep (objects whose key is gone, keys without a live subject, objects past their schedule).
    orphan_sweep_interval_seconds: float = 24 * 3600.0
    #: A key without a live subject is destroyed only when older than this (a subject being opened has its
    #: key a moment before its record).
    orphan_key_grace_days: float = 1.0
    #: Subject activity (which postpones the inactivity deadline) is written at most this often per subject.
    activity_resolution_seconds: float = 3600.0
    #: How long a replica holds a claim on a deadline or an erasure before another may take it over.
    lease_seconds: float = 120.0
    #: Names this replica in leases; default host name and process id.
    replica_id: str = ""
    #: Prefix of the KV bucket names and of the durable event consumer (tests run isolated instances).
    kv_bucket_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_-]*$")
    #: Ed25519 key that signs erasure receipts: base64 of its 32-byte seed (`likeness receipt keygen`).
    #: Empty in development: derived from the HMAC secret. Required in production.
    receipt_signing_key: SecretStr = SecretStr("")
    #: Public keys (base64) of earlier signing keys, still published so their receipts keep verifying.
    receipt_previous_public_keys: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _production_needs_a_signing_key(self) -> RetentionSettings:
        if self.is_production and not self.receipt_signing_key.get_secret_value().strip():
            raise ValueError("refusing production settings: LIKENESS_RECEIPT_SIGNING_KEY is required")
        return self

    @property
    def holder(self) -> str:
        return self.replica_id or f"{socket.gethostname()}-{os.getpid()}"


@lru_cache(maxsize=1)
def get_settings() -> RetentionSettings:
    return RetentionSettings()
