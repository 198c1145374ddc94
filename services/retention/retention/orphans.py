"""Orphan sweeps: what no deadline or erasure accounts for.

- **Objects whose key is gone** (a backup restored after an erasure, a worker's write that landed after
  the purge, an erasure interrupted by a crash of S3): noise already, deleted anyway.
- **Objects past their schedule** of a live subject (a deadline whose event never came): deleted by age,
  from the object's last-modified time and the subject's stored schedule. The backstop for the reaper.
- **Keys without a live subject** (a subject whose opening failed after its key was made, a tombstone
  whose key survived): destroyed once older than `orphan_key_grace_days`.

One replica at a time runs it (a lease), every `orphan_sweep_interval_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from likeness import ids
from likeness.audit import AuditTrail
from likeness.object_names import subject_prefix
from likeness.runtime import Platform
from likeness.timeutil import Clock
from likeness.v1 import retention_pb2
from retention import metrics
from retention.config import RetentionSettings
from retention.leases import Leases
from retention.records import RetentionRecords
from retention.storage import RetentionStore, Version, kind_of
from retention.vault_keys import RetentionKeys

log = logging.getLogger(__name__)
SS = retention_pb2.SubjectStatus
LIVE = (SS.SUBJECT_STATUS_ACTIVE, SS.SUBJECT_STATUS_ERASING)
#: Tenant named in the audit record of a key whose subject record is gone (the key names no tenant).
UNKNOWN_TENANT = "unknown"
LEASE = "sweep.orphans"


@dataclass
class OrphanResult:
    orphan_objects: int = 0
    expired_objects: int = 0
    keys_destroyed: int = 0


def _days_for(kind: str, schedule: retention_pb2.RetentionSchedule) -> int:
    return {
        "photo": schedule.photos_days,
        "face": schedule.photos_days,
        "model": schedule.models_days,
        "render": schedule.renders_days,
    }.get(kind, 0)


def past_schedule(
    versions: list[Version], schedule: retention_pb2.RetentionSchedule, now: datetime
) -> list[Version]:
    """The versions older than their kind's retention period (kinds without one are left alone)."""
    expired = []
    for version in versions:
        days = _days_for(kind_of(version.key), schedule)
        if days and version.last_modified is not None and version.last_modified + timedelta(days=days) <= now:
            expired.append(version)
    return expired


class OrphanSweeper:
    def __init__(
        self,
        platform: Platform,
        records: RetentionRecords,
        audit: AuditTrail,
        leases: Leases,
        settings: RetentionSettings,
        clock: Clock,
    ) -> None:
        self.records = records
        self.audit = audit
        self.leases = leases
        self.settings = settings
        self.clock = clock
        self.store = RetentionStore.of(platform.store)
        self.keys = RetentionKeys.of(platform.keys)

    async def sweep(self) -> OrphanResult | None:
        """Objects, then keys, under the sweep lease; None if another replica holds it."""
        revision = await self.leases.acquire(LEASE)
        if revision is None:
            return None
        try:
            result = await self.sweep_objects()
            result.keys_destroyed = await self.sweep_keys()
            return result
        finally:
            await self.leases.release(LEASE, revision)

    async def sweep_objects(self, tenants: Collection[str] | None = None) -> OrphanResult:
        result = OrphanResult()
        now = self.clock.now()
        for tenant, subject_id in await asyncio.to_thread(self.store.subjects_with_objects, tenants):
            if not ids.is_valid_id(subject_id, "sub"):
                continue
            prefix = subject_prefix(tenant, subject_id)
            # Raises while Vault is away: nothing is deleted on a guess.
            if not await asyncio.to_thread(self.keys.exists, subject_id):
                deleted = await asyncio.to_thread(self.store.delete_under, [prefix])
                if deleted:
                    result.orphan_objects += len(deleted)
                    metrics.count_deleted([(v.key, v.size) for v in deleted], "orphan")
                    await self.audit.record(
                        tenant, "orphan.objects_deleted", subject_id, "ok", purpose="retention"
                    )
                continue
            found = await self.records.get_subject(tenant, subject_id)
            if found is None or found[0].status != SS.SUBJECT_STATUS_ACTIVE:
                continue
            versions = await asyncio.to_thread(self.store.versions, prefix)
            expired = past_schedule(versions, found[0].retention, now)
            if expired:
                await asyncio.to_thread(self.store.delete_versions, expired)
                result.expired_objects += len(expired)
                metrics.count_deleted([(v.key, v.size) for v in expired], "deadline")
                await self.audit.record(tenant, "data.deleted", subject_id, "ok", purpose="retention")
        return result

    async def sweep_keys(self, only: Callable[[str], bool] | None = None) -> int:
        """Destroys keys older than the grace period whose subject is not live; `only` narrows (tests)."""
        subjects = {subject.id: subject for subject, _ in await self.records.all_subjects()}
        grace = timedelta(days=self.settings.orphan_key_grace_days)
        now = self.clock.now()
        destroyed = 0
        for subject_id in await asyncio.to_thread(self.keys.subject_ids):
            if not ids.is_valid_id(subject_id, "sub") or (only is not None and not only(subject_id)):
                continue
            subject = subjects.get(subject_id)
            if subject is not None and subject.status in LIVE:
                continue
            created = await asyncio.to_thread(self.keys.created_at, subject_id)
            if created is None or now - created < grace:
                continue
            if await asyncio.to_thread(self.keys.destroy, subject_id):
                destroyed += 1
                metrics.KEYS_DESTROYED.labels(reason="orphan").inc()
                tenant = subject.tenant if subject is not None else UNKNOWN_TENANT
                await self.audit.record(tenant, "orphan.key_destroyed", subject_id, "ok", purpose="retention")
                log.info("orphan key destroyed")
        return destroyed
