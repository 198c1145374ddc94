"""Erasure of one subject, in the order that makes it safe to stop at any point and resume.

1. Destroy the subject's Vault key: from that instant every copy of every blob is noise (crypto-erase).
2. Delete every object version under the subject's prefix.
3. Purge the subject's event history and announce `evt.<tenant>.<subject>.subject.erased`, on which the
   owners of the other KV buckets drop their records and workers cancel jobs and drop caches.
4. Mark the subject record as an erased tombstone (no personal data left in it) and complete the erasure.

Nothing is reported done before the key is destroyed; transient failures are retried with backoff and
shown on the erasure record (`last_error`, `attempts`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from likeness.audit import AuditTrail
from likeness.bus import event_subject
from likeness.keys import KeyError_, key_name
from likeness.objects import subject_prefix
from likeness.runtime import Platform
from likeness.store import StoreError
from likeness.timeutil import from_timestamp, now_timestamp, to_timestamp
from likeness.v1 import events_pb2, retention_pb2
from retention.config import RetentionSettings
from retention.records import RetentionRecords

log = logging.getLogger(__name__)

ES = retention_pb2.ErasureStatus


class Eraser:
    def __init__(
        self, platform: Platform, records: RetentionRecords, audit: AuditTrail, settings: RetentionSettings
    ) -> None:
        self.platform = platform
        self.records = records
        self.audit = audit
        self.settings = settings
        self._running: dict[str, asyncio.Task[None]] = {}

    def start(self, erasure: retention_pb2.Erasure, subject_id: str) -> None:
        """Runs the erasure in the background (once per erasure id)."""
        if erasure.id in self._running and not self._running[erasure.id].done():
            return
        self._running[erasure.id] = asyncio.create_task(self._run(erasure, subject_id))

    async def wait_all(self) -> None:
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _run(self, erasure: retention_pb2.Erasure, subject_id: str) -> None:
        delay = self.settings.erasure_retry_initial_seconds
        while erasure.status != ES.ERASURE_STATUS_COMPLETED:
            try:
                await self._advance(erasure, subject_id)
            except (KeyError_, StoreError, OSError, TimeoutError) as exc:
                erasure.attempts += 1
                erasure.last_error = f"{type(exc).__name__}: retrying"
                log.warning(
                    "erasure step failed; retrying",
                    extra={"erasure_id": erasure.id, "error": type(exc).__name__},
                )
                await self._save(erasure)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.erasure_retry_max_seconds)
        log.info("erasure completed", extra={"erasure_id": erasure.id})

    async def _save(self, erasure: retention_pb2.Erasure) -> None:
        try:
            await self.records.put_erasure(erasure)
        except Exception:  # the record is best effort while NATS is down; the erasure itself goes on
            log.warning("could not save erasure progress", extra={"erasure_id": erasure.id})

    async def _advance(self, erasure: retention_pb2.Erasure, subject_id: str) -> None:
        tenant = erasure.tenant
        if erasure.status in (ES.ERASURE_STATUS_PENDING, ES.ERASURE_STATUS_UNSPECIFIED):
            await asyncio.to_thread(self.platform.keys.destroy, subject_id)
            destroyed_at = now_timestamp()
            erasure.key_destroyed_at.CopyFrom(destroyed_at)
            moment = from_timestamp(destroyed_at)
            assert moment is not None
            horizon = moment + timedelta(days=self.settings.vault_snapshot_retention_days)
            erasure.backups_expire_by.CopyFrom(to_timestamp(horizon))
            erasure.status = ES.ERASURE_STATUS_KEY_DESTROYED
            erasure.last_error = ""
            await self.records.put_erasure(erasure)
            await self.audit.record(tenant, "subject.key_destroyed", subject_id, "ok", erasure.id)

        objects, size = await asyncio.to_thread(
            self.platform.store.delete_all_versions, subject_prefix(tenant, subject_id)
        )
        erasure.objects_deleted += objects
        erasure.bytes_deleted += size
        erasure.events_purged += await self.platform.bus.purge_subject_events(tenant, subject_id)
        await self.platform.bus.publish(
            event_subject(tenant, subject_id, "subject.erased"),
            events_pb2.SubjectErased(
                tenant=tenant, subject_id=subject_id, erasure_id=erasure.id, at=now_timestamp()
            ),
            msg_id=f"{erasure.id}.erased",
        )
        erasure.records_deleted += await self._tombstone_subject(tenant, subject_id)
        erasure.status = ES.ERASURE_STATUS_COMPLETED
        erasure.completed_at.CopyFrom(now_timestamp())
        erasure.last_error = ""
        await self.records.put_erasure(erasure)
        await self.audit.record(tenant, "subject.erased", subject_id, "ok", erasure.id)

    async def _tombstone_subject(self, tenant: str, subject_id: str) -> int:
        """Replaces the subject record with a tombstone holding only ids and status (later reads say 410)."""
        found = await self.records.get_subject(tenant, subject_id)
        if found is None:
            return 0
        subject, revision = found
        tombstone = retention_pb2.Subject(
            tenant=tenant,
            id=subject_id,
            status=retention_pb2.SubjectStatus.SUBJECT_STATUS_ERASED,
            erasure_id=subject.erasure_id,
        )
        await self.records.update_subject(tombstone, revision)
        return 1


def new_erasure_record(
    erasure_id: str, tenant: str, subject_hmac: str, subject_id: str, cause: str
) -> retention_pb2.Erasure:
    return retention_pb2.Erasure(
        id=erasure_id,
        tenant=tenant,
        subject_hmac=subject_hmac,
        status=ES.ERASURE_STATUS_PENDING,
        cause=cause,
        key_name=key_name(subject_id),
        requested_at=now_timestamp(),
    )
