"""Erasure of one subject, in the order that makes it safe to stop at any point and resume.

1. Destroy the subject's Vault key: from that instant every copy of every blob is noise (crypto-erase).
2. Delete every object version under the subject's prefix.
3. Purge the subject's event history and announce `evt.<tenant>.<subject>.subject.erased`, on which the
   owners of the other KV buckets drop their records and workers cancel jobs and drop caches.
4. Replace the subject record with a tombstone keyed by the subject's keyed HMAC (status and erasure id,
   no subject id), drop its deadlines, schedule a rescan of the prefix for what a worker was still writing,
   complete the erasure: from then on its record names the subject only as `subject_hmac` and
   `subject_commitment` (the Vault key name, which holds the id, is cleared).
5. Issue the signed erasure receipt (which binds the subject through the commitment: see
   `likeness.receipts`; its salt goes to the caller that requested the erasure, once, and is never stored).

The rescan, once done, forgets the subject's deadline keys and (when every service has acknowledged it)
the `subject.erased` notice: after that no KV key, stream message or receipt names the subject in clear
(`retention.history`).

Nothing is reported done before the key is destroyed; transient failures (Vault, S3 or NATS away) are
retried with backoff and shown on the erasure record (`last_error`, `attempts`). One replica at a time
drives an erasure (a lease in KV); if it dies, another takes over once the lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import NamedTuple

import nats.errors
import nats.js.errors

from likeness import ids
from likeness.audit import AuditTrail
from likeness.bus import event_nats_subject
from likeness.hashing import keyed_hmac
from likeness.method_access import current_principal
from likeness.object_names import subject_prefix
from likeness.receipts import new_receipt_salt, subject_commitment
from likeness.runtime import Platform
from likeness.store import StoreError
from likeness.timeutil import Clock, from_timestamp, to_timestamp
from likeness.v1 import events_pb2, retention_pb2
from likeness.vault_transit import KEY_PREFIX, KeyError_, key_name
from retention import history, metrics
from retention.config import RetentionSettings
from retention.consents import ConsentBook
from retention.deadlines import Deadline, DeadlineBook, DeadlineKind
from retention.leases import Leases
from retention.receipts import ReceiptIssuer
from retention.records import RetentionRecords
from retention.storage import RetentionStore

log = logging.getLogger(__name__)

ES = retention_pb2.ErasureStatus
#: How often a replica checks whether an erasure another replica holds is done, or its lease expired.
_LEASE_WATCH_SECONDS = 5.0
SS = retention_pb2.SubjectStatus
#: Failures worth another try: the key service, the object store or NATS away, a record changed under us.
RETRYABLE = (KeyError_, StoreError, OSError, TimeoutError, nats.errors.Error)


class Requested(NamedTuple):
    erasure: retention_pb2.Erasure | None
    #: Whether this call started it (False: it was already under way or done, or there is none).
    started: bool
    #: The salt of the erasure's subject commitment, when this call started it (given once, never stored).
    receipt_salt: str = ""


def erasure_lease(tenant: str, erasure_id: str) -> str:
    return f"erasure.{tenant}.{erasure_id}"


class Eraser:
    def __init__(
        self,
        platform: Platform,
        records: RetentionRecords,
        audit: AuditTrail,
        settings: RetentionSettings,
        clock: Clock,
        leases: Leases,
        receipts: ReceiptIssuer,
    ) -> None:
        self.platform = platform
        self.records = records
        self.audit = audit
        self.settings = settings
        self.clock = clock
        self.leases = leases
        self.receipts = receipts
        self.deadlines = DeadlineBook(records.deadlines)
        # Tombstones and erasure records name the subject by a keyed HMAC under retention's own secret
        # (`hmac_secret`), not the audit pseudonym: the services that hold the audit secret cannot link them.
        records.subject_hmac = self.subject_hmac
        self.consents = ConsentBook(records, clock)
        self.store = RetentionStore.of(platform.store)
        self._running: dict[str, asyncio.Task[None]] = {}
        # Key destruction never queues behind bulk S3 deletions: with many erasures at once, every key
        # still goes within moments of its request (the instant crypto-erase is the promise).
        self._key_threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="erasure-keys")
        self._store_threads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="erasure-store")
        #: Told of each deadline the eraser schedules (the reaper, so the rescan fires on time).
        self.on_scheduled: Callable[[datetime, str], None] = lambda due, key: None

    def subject_hmac(self, tenant: str, subject_id: str) -> str:
        """The subject's keyed HMAC on what outlives it (tombstone, erasure record, receipt)."""
        return keyed_hmac(self.settings.hmac_secret.get_secret_value(), "subject", tenant, subject_id)

    # ------------------------------------------------------------------------------------------ request

    async def request(
        self,
        tenant: str,
        subject_id: str,
        cause: str,
        still_due: Callable[[retention_pb2.Subject], bool] | None = None,
    ) -> Requested:
        """Starts erasing the subject (or returns the erasure already under way or done).

        The subject record is switched to ERASING with compare-and-set *before* the erasure record is
        written, so two requests (or two replicas' sweeps) can never start two erasures of one person.
        No erasure: no such subject, or (with `still_due`) it is no longer due.
        """
        for _ in range(20):
            found = await self.records.get_subject(tenant, subject_id)
            if found is None:
                return Requested(None, started=False)
            subject, revision = found
            if subject.erasure_id:
                return Requested(await self._existing(subject, cause), started=False)
            if subject.status != SS.SUBJECT_STATUS_ACTIVE or (still_due and not still_due(subject)):
                return Requested(None, started=False)
            salt = new_receipt_salt()
            erasure = new_erasure_record(
                ids.new_id("era"),
                tenant,
                self.subject_hmac(tenant, subject_id),
                subject_id,
                cause,
                self.clock.now(),
                salt,
            )
            subject.status = SS.SUBJECT_STATUS_ERASING
            subject.erasure_id = erasure.id
            try:
                await self.records.update_subject(subject, revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            await self.records.put_erasure(erasure)
            await self.audit.record(
                tenant,
                "subject.erase_requested",
                subject_id,
                "accepted",
                erasure.id,
                # The caller's token when asked through the API; `service:retention` for a deadline.
                principal=self.audit.principal(current_principal()),
                purpose="erasure",
            )
            self.start(erasure, subject_id)
            return Requested(erasure, started=True, receipt_salt=salt)
        raise RuntimeError("subject record kept changing under us")

    async def _existing(self, subject: retention_pb2.Subject, cause: str) -> retention_pb2.Erasure:
        erasure = await self.records.get_erasure(subject.tenant, subject.erasure_id)
        if erasure is None:
            # The process stopped between marking the subject and writing the erasure: write it now. Its
            # salt is lost with the answer that never went out: the commitment binds, nobody can check it.
            erasure = new_erasure_record(
                subject.erasure_id,
                subject.tenant,
                self.subject_hmac(subject.tenant, subject.id),
                subject.id,
                cause,
                self.clock.now(),
                new_receipt_salt(),
            )
            await self.records.put_erasure(erasure)
        if erasure.status != ES.ERASURE_STATUS_COMPLETED or not await self.receipts.get(
            erasure.tenant, erasure.id
        ):
            self.start(erasure, subject.id)
        return erasure

    # ------------------------------------------------------------------------------------------ running

    def start(self, erasure: retention_pb2.Erasure, subject_id: str) -> None:
        """Drives the erasure to completion in the background (once per process; the lease makes it once
        across replicas)."""
        running = self._running.get(erasure.id)
        if running is not None and not running.done():
            return
        self._running[erasure.id] = asyncio.create_task(self._run(erasure, subject_id))

    def is_running(self, erasure_id: str) -> bool:
        task = self._running.get(erasure_id)
        return task is not None and not task.done()

    async def wait_all(self) -> None:
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def stop(self) -> None:
        for task in self._running.values():
            task.cancel()
        await self.wait_all()
        self._key_threads.shutdown(wait=False, cancel_futures=True)
        self._store_threads.shutdown(wait=False, cancel_futures=True)

    async def _run(self, erasure: retention_pb2.Erasure, subject_id: str) -> None:
        name = erasure_lease(erasure.tenant, erasure.id)
        revision = await self._acquire_or_outlive(erasure, name)
        if revision is None:
            return
        held = _HeldLease(name, revision)
        keeper = asyncio.create_task(self._keep_lease(held))
        metrics.BACKLOG.started(erasure.id, from_timestamp(erasure.requested_at) or self.clock.now())
        try:
            latest = await self.records.get_erasure(erasure.tenant, erasure.id)
            await self._drive(latest or erasure, subject_id, held)
        finally:
            metrics.BACKLOG.ended(erasure.id)
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            if not held.lost.is_set():
                await self.leases.release(name, held.revision)

    async def _acquire_or_outlive(self, erasure: retention_pb2.Erasure, name: str) -> int | None:
        """The erasure's lease, or None once another replica has completed the erasure.

        While another replica holds the lease this one keeps watching: if that replica died (killed
        mid-erasure, its lease left to expire), this one takes over as soon as the lease runs out,
        rather than leaving the erasure unfinished until the next sweep.
        """
        delay = self.settings.erasure_retry_initial_seconds
        announced = False
        while True:
            try:
                revision = await self.leases.acquire(name)
                if revision is not None:
                    return revision
                latest = await self.records.get_erasure(erasure.tenant, erasure.id)
            except nats.errors.Error:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.erasure_retry_max_seconds)
                continue
            if latest is None or latest.status == ES.ERASURE_STATUS_COMPLETED:
                return None
            if not announced:
                log.info("erasure driven by another replica", extra={"erasure_id": erasure.id})
                announced = True
            await asyncio.sleep(min(self.settings.lease_seconds / 3, _LEASE_WATCH_SECONDS))

    async def _keep_lease(self, held: _HeldLease) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                renewed = await self.leases.renew(held.name, held.revision)
            except nats.errors.Error:
                continue  # NATS away: keep going, try again (the erasure is idempotent either way)
            if renewed is None:
                log.warning("erasure lease taken over by another replica", extra={"lease": held.name})
                held.lost.set()
                return
            held.revision = renewed

    async def _drive(self, erasure: retention_pb2.Erasure, subject_id: str, held: _HeldLease) -> None:
        delay = self.settings.erasure_retry_initial_seconds
        while not held.lost.is_set():
            stage = _stage(erasure)
            try:
                if await self._advance(erasure, subject_id):
                    break
            except RETRYABLE as exc:
                erasure.attempts += 1
                erasure.last_error = f"{type(exc).__name__}: retrying"
                metrics.ERASURE_RETRIES.labels(stage=stage).inc()
                log.warning(
                    "erasure step failed; retrying",
                    extra={"erasure_id": erasure.id, "stage": stage, "error": type(exc).__name__},
                )
                await self._save_quietly(erasure)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.erasure_retry_max_seconds)
        if not held.lost.is_set():
            log.info("erasure completed", extra={"erasure_id": erasure.id})

    async def _save_quietly(self, erasure: retention_pb2.Erasure) -> None:
        try:
            await self.records.put_erasure(erasure)
        except Exception:  # the record is best effort while NATS is down; the erasure itself goes on
            log.warning("could not save erasure progress", extra={"erasure_id": erasure.id})

    # ------------------------------------------------------------------------------------------ steps

    async def _advance(self, erasure: retention_pb2.Erasure, subject_id: str) -> bool:
        """Carries the erasure as far as it goes; True once completed with its receipt issued."""
        if erasure.status in (ES.ERASURE_STATUS_PENDING, ES.ERASURE_STATUS_UNSPECIFIED):
            await self._destroy_key(erasure, subject_id)
        if erasure.status == ES.ERASURE_STATUS_KEY_DESTROYED:
            await self._purge(erasure, subject_id)
        await self.receipts.issue(erasure)
        await self.audit.record_quietly(
            erasure.tenant, "receipt.issued", subject_id, "ok", erasure.id, purpose="erasure"
        )
        return True

    async def _destroy_key(self, erasure: retention_pb2.Erasure, subject_id: str) -> None:
        loop = asyncio.get_running_loop()
        destroyed = await loop.run_in_executor(self._key_threads, self.platform.keys.destroy, subject_id)
        now = self.clock.now()
        erasure.key_destroyed_at.CopyFrom(to_timestamp(now))
        horizon = now + timedelta(days=self.settings.vault_snapshot_retention_days)
        erasure.backups_expire_by.CopyFrom(to_timestamp(horizon))
        erasure.status = ES.ERASURE_STATUS_KEY_DESTROYED
        erasure.last_error = ""
        await self.records.put_erasure(erasure)
        metrics.ERASURE_SECONDS.labels(stage="key_destroyed").observe(_since(erasure, now))
        if destroyed:
            metrics.KEYS_DESTROYED.labels(reason="erasure").inc()
        await self.audit.record_quietly(
            erasure.tenant, "subject.key_destroyed", subject_id, "ok", erasure.id, purpose="erasure"
        )

    async def _purge(self, erasure: retention_pb2.Erasure, subject_id: str) -> None:
        tenant = erasure.tenant
        prefixes = [subject_prefix(tenant, subject_id)]
        loop = asyncio.get_running_loop()
        deleted = await loop.run_in_executor(self._store_threads, self.store.delete_under, prefixes)
        if deleted:
            erasure.objects_deleted += len({v.key for v in deleted})
            erasure.bytes_deleted += sum(v.size for v in deleted)
            metrics.count_deleted([(v.key, v.size) for v in deleted], "erasure")
            await self.records.put_erasure(erasure)
        erasure.events_purged += await self.platform.bus.purge_subject_events(tenant, subject_id)
        await history.purge_queued_jobs(self.platform.bus.js, tenant, subject_id)
        now = self.clock.now()
        await self.platform.bus.publish(
            event_nats_subject(tenant, subject_id, "subject.erased"),
            events_pb2.SubjectErased(
                tenant=tenant, subject_id=subject_id, erasure_id=erasure.id, at=to_timestamp(now)
            ),
            msg_id=f"{erasure.id}.erased",
        )
        erasure.records_deleted += await self._tombstone_subject(tenant, subject_id)
        erasure.records_deleted += await self.consents.drop(tenant, subject_id)
        erasure.records_deleted += await self.deadlines.drop_subject(
            tenant, subject_id, keep=frozenset({DeadlineKind.RESCAN})
        )
        rescan_at = now + timedelta(seconds=self.settings.erasure_rescan_seconds)
        rescan = await self.deadlines.schedule(
            Deadline(tenant, subject_id, DeadlineKind.RESCAN, erasure.id, due=rescan_at)
        )
        self.on_scheduled(rescan.due, rescan.key)
        erasure.status = ES.ERASURE_STATUS_COMPLETED
        erasure.completed_at.CopyFrom(to_timestamp(now))
        erasure.last_error = ""
        erasure.key_name = ""  # it holds the subject id; the rescan takes the id from its own deadline
        if not erasure.subject_commitment:  # requested before commitments existed: bind, unverifiably
            salt = new_receipt_salt()
            erasure.subject_commitment = subject_commitment(salt, tenant, subject_id)
        await self.records.put_erasure(erasure)
        metrics.ERASURE_SECONDS.labels(stage="purge_complete").observe(_since(erasure, now))
        metrics.ERASURES.labels(cause=metrics.cause_label(erasure.cause)).inc()
        await self.audit.record_quietly(
            tenant, "subject.erased", subject_id, "ok", erasure.id, purpose="erasure"
        )

    async def _tombstone_subject(self, tenant: str, subject_id: str) -> int:
        """Replaces the subject record with a tombstone under the subject's keyed HMAC, holding status and
        erasure id only (later reads say 410), then forgets the record and its history without a marker."""
        found = await self.records.get_subject(tenant, subject_id)
        if found is None or found[0].status == SS.SUBJECT_STATUS_ERASED:
            return 0
        # Tombstone first: a crash in between leaves both, and the subject always reads as erasing or erased.
        await self.records.put_tombstone(tenant, self.subject_hmac(tenant, subject_id), found[0].erasure_id)
        await self.records.forget_subject(tenant, subject_id)
        return 1

    # ------------------------------------------------------------------------------------------ upgrade
    # Erasures completed before their records stopped naming the subject. Both steps are idempotent;
    # receipts already signed stay as they are (version 1, which named the key).

    async def conceal_tombstone(self, subject: retention_pb2.Subject) -> None:
        """An old tombstone (kept under the subject id) moves under the subject's keyed HMAC; the subject's
        deadline keys are forgotten with it."""
        subject_hmac = self.subject_hmac(subject.tenant, subject.id)
        await self.records.put_tombstone(subject.tenant, subject_hmac, subject.erasure_id)
        await self.records.forget_subject(subject.tenant, subject.id)
        await self.deadlines.forget_subject(subject.tenant, subject.id)

    async def conceal_completed(self, erasure: retention_pb2.Erasure) -> None:
        """A completed erasure record loses its key name (bound instead by a commitment nobody can check)."""
        if not erasure.subject_commitment:
            subject_id = erasure.key_name.removeprefix(KEY_PREFIX)
            erasure.subject_commitment = subject_commitment(new_receipt_salt(), erasure.tenant, subject_id)
        erasure.key_name = ""
        await self.records.put_erasure(erasure)


class _HeldLease:
    def __init__(self, name: str, revision: int) -> None:
        self.name = name
        self.revision = revision
        self.lost = asyncio.Event()


def _stage(erasure: retention_pb2.Erasure) -> str:
    if erasure.status in (ES.ERASURE_STATUS_PENDING, ES.ERASURE_STATUS_UNSPECIFIED):
        return "key"
    return "purge" if erasure.status == ES.ERASURE_STATUS_KEY_DESTROYED else "receipt"


def _since(erasure: retention_pb2.Erasure, now: datetime) -> float:
    requested = from_timestamp(erasure.requested_at)
    return max(0.0, (now - requested).total_seconds()) if requested else 0.0


def new_erasure_record(
    erasure_id: str,
    tenant: str,
    subject_hmac: str,
    subject_id: str,
    cause: str,
    now: datetime,
    salt: str,
) -> retention_pb2.Erasure:
    return retention_pb2.Erasure(
        id=erasure_id,
        tenant=tenant,
        subject_hmac=subject_hmac,
        status=ES.ERASURE_STATUS_PENDING,
        cause=cause,
        key_name=key_name(subject_id),
        requested_at=to_timestamp(now),
        subject_commitment=subject_commitment(salt, tenant, subject_id),
    )
