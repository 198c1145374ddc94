"""The reaper: deadlines from the domain events, carried out on time, by any number of replicas.

- **Events** (`evt.>`, one durable consumer shared by the replicas): `photo.accepted`, `training.completed`
  / `.failed` and `render.completed` / `.failed` schedule per-object deadlines from the subject's stored
  schedule (photos N days after upload or as soon as a training succeeds, models and renders M days after
  they are made, a failed training's leftovers at once); every event of a subject is activity, which
  postpones the inactivity deadline. An event of a subject being or already erased (a worker's last word
  after the purge) is purged as it arrives.
- **Deadlines** fire when due: the ones this replica learned of are kept in memory and fire on time; a full
  pass every `sweep_interval_seconds` finds every due deadline and subject (also the ones learned by other
  replicas or before a restart). Whole subjects are erased, key included, after inactivity or at the hard
  cap.
- **Replicas**: a deadline is carried out only by the replica that claimed it with compare-and-set, a
  subject is erased once (its record switched to ERASING with compare-and-set), and an erasure is driven
  by one lease holder. Everything is idempotent: a claim of a replica that died expires and is taken over.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import nats.js.errors
from google.protobuf.message import Message
from nats.aio.msg import Msg

from likeness.audit import AuditTrail
from likeness.bus import TYPE_HEADER
from likeness.provisioning import ERASURE_PURGERS, erasures_consumer_name
from likeness.runtime import Platform
from likeness.timeutil import Clock, from_timestamp, to_timestamp
from likeness.v1 import events_pb2, retention_pb2
from retention import history, metrics
from retention.config import RetentionSettings
from retention.deadlines import Deadline, DeadlineBook, DeadlineKind, deadline_key
from retention.erasure import Eraser
from retention.records import RetentionRecords
from retention.schedule import model_deadline, photo_deadline, render_deadline, subject_deadline
from retention.storage import RetentionStore, Version

#: The durable consumers that must have acknowledged an erasure notice before it is forgotten.
NOTICE_CONSUMERS = tuple(erasures_consumer_name(service) for service in ERASURE_PURGERS)

log = logging.getLogger(__name__)
SS = retention_pb2.SubjectStatus

EVENT_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        events_pb2.PhotoAccepted,
        events_pb2.PhotoRejected,
        events_pb2.TrainingProgress,
        events_pb2.TrainingCompleted,
        events_pb2.TrainingFailed,
        events_pb2.RenderCompleted,
        events_pb2.RenderFailed,
        events_pb2.SubjectOpened,
    )
}
_SUBJECT_KEY = "subject:"


@dataclass
class SweepResult:
    deadlines_fired: int = 0
    objects_deleted: int = 0
    subjects_erased: int = 0
    overdue: int = 0
    oldest_overdue_seconds: float = 0.0
    fired: list[str] = field(default_factory=list)


class Reaper:
    def __init__(
        self,
        platform: Platform,
        records: RetentionRecords,
        eraser: Eraser,
        audit: AuditTrail,
        settings: RetentionSettings,
        clock: Clock,
    ) -> None:
        self.platform = platform
        self.records = records
        self.eraser = eraser
        self.audit = audit
        self.settings = settings
        self.clock = clock
        self.holder = settings.holder
        self.deadlines = DeadlineBook(records.deadlines)
        self.store = RetentionStore.of(platform.store)
        self.lease = timedelta(seconds=settings.lease_seconds)
        #: Every deadline key this replica carried out (tests check no two replicas share one).
        self.fired: list[str] = []
        self.objects_deleted = 0
        self._known: list[tuple[datetime, str]] = []
        self._known_set: set[tuple[datetime, str]] = set()
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------------------------------ events

    async def consume_events(self) -> None:
        """Joins the replicas' durable consumer of every domain event."""
        durable = f"{self.settings.kv_bucket_prefix}retention-deadlines"
        await self.platform.bus.watch_events("evt.>", self.on_message, durable=durable)

    async def on_message(self, msg: Msg) -> None:
        parts = msg.subject.split(".")
        if len(parts) < 4:
            return
        type_name = (msg.headers or {}).get(TYPE_HEADER, "")
        await self.handle_event(parts[1], parts[2], msg.subject, type_name, msg.data)

    async def handle_event(
        self, tenant: str, subject_id: str, nats_subject: str, type_name: str, data: bytes
    ) -> None:
        if history.is_erasure_notice(nats_subject):
            return
        found = await self.records.get_subject(tenant, subject_id)
        if found is None:
            return  # not a subject of ours (or of this isolated instance)
        subject, revision = found
        if subject.status != SS.SUBJECT_STATUS_ACTIVE:
            # A worker's last word after the purge: it must not outlive the person.
            await history.purge_one_subject(self.platform.bus.js, nats_subject)
            return
        cls = EVENT_TYPES.get(type_name)
        event = cls.FromString(data) if cls is not None else None
        at = self._event_time(event)
        for deadline in self._deadlines_for(subject, event, at):
            stored = await self.deadlines.schedule(deadline)
            self.remember(stored.due, stored.key)
            if stored.due <= self.clock.now():
                await self.execute(stored.key)
        await self._touch(subject, revision, at)

    def _event_time(self, event: Message | None) -> datetime:
        stamp = getattr(event, "at", None)
        moment = from_timestamp(stamp) if stamp is not None else None
        return moment or self.clock.now()

    def _deadlines_for(
        self, subject: retention_pb2.Subject, event: Message | None, at: datetime
    ) -> list[Deadline]:
        schedule, tenant, sid = subject.retention, subject.tenant, subject.id
        hard = from_timestamp(subject.delete_by)

        def make(
            kind: DeadlineKind, resource: str, due: datetime, cutoff: datetime | None = None
        ) -> Deadline:
            return Deadline(tenant, sid, kind, resource, min(due, hard) if hard else due, cutoff)

        if isinstance(event, events_pb2.PhotoAccepted):
            return [make(DeadlineKind.PHOTO, event.photo_id, photo_deadline(schedule, at))]
        if isinstance(event, events_pb2.TrainingCompleted):
            found = [make(DeadlineKind.MODEL, event.training_id, model_deadline(schedule, at))]
            if schedule.photos_deleted_after_training:
                found.append(make(DeadlineKind.TRAINED_PHOTOS, event.training_id, at, cutoff=at))
            return found
        if isinstance(event, events_pb2.TrainingFailed):
            # Nothing of a failed or cancelled training is of use to anyone: its leftovers go now.
            return [make(DeadlineKind.MODEL, event.training_id, at)]
        if isinstance(event, events_pb2.RenderCompleted | events_pb2.RenderFailed):
            return [make(DeadlineKind.RENDER, event.render_id, render_deadline(schedule, at))]
        return []

    async def _touch(self, subject: retention_pb2.Subject, revision: int, at: datetime) -> None:
        """Moves the subject's last activity forward (at most once per `activity_resolution_seconds`)."""
        resolution = timedelta(seconds=self.settings.activity_resolution_seconds)
        for _ in range(10):
            last = from_timestamp(subject.last_activity_at)
            if last is not None and at - last < resolution:
                return
            subject.last_activity_at.CopyFrom(to_timestamp(at))
            try:
                await self.records.update_subject(subject, revision)
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                found = await self.records.get_subject(subject.tenant, subject.id)
                if found is None or found[0].status != SS.SUBJECT_STATUS_ACTIVE:
                    return
                subject, revision = found

    # ------------------------------------------------------------------------------------------ deadlines

    async def execute(self, key: str) -> bool:
        """Carries out one due deadline if this replica wins the claim; True if it did."""
        claimed = await self.deadlines.claim(key, self.holder, self.clock.now(), self.lease)
        if claimed is None:
            return False
        deadline, revision = claimed
        try:
            deleted = await self._carry_out(deadline)
        except BaseException:
            await self.deadlines.release(key, revision)
            raise
        if deadline.kind == DeadlineKind.RESCAN:
            # The erasure's last step: every deadline key of the subject goes, without a marker naming
            # them (this one included), and the erasure notice once every service acknowledged it.
            await self.forget_erasure_notice(deadline.tenant, deadline.subject_id)
            await self.deadlines.forget_subject(deadline.tenant, deadline.subject_id)
        else:
            await self.deadlines.complete(key, revision)
        self.objects_deleted += len(deleted)
        metrics.DEADLINES_FIRED.labels(kind=deadline.kind.value).inc()
        self.fired.append(key)
        return True

    async def _carry_out(self, deadline: Deadline) -> list[Version]:
        found = await self.records.get_subject(deadline.tenant, deadline.subject_id)
        if deadline.kind == DeadlineKind.RESCAN:
            deleted = await asyncio.to_thread(self.store.delete_under, deadline.prefixes())
            await history.purge_late_events(self.platform.bus.js, deadline.tenant, deadline.subject_id)
            await history.purge_queued_jobs(self.platform.bus.js, deadline.tenant, deadline.subject_id)
            metrics.count_deleted([(v.key, v.size) for v in deleted], "late")
            return deleted
        if found is None or found[0].status != SS.SUBJECT_STATUS_ACTIVE:
            return []  # being or already erased: its erasure deletes everything
        deleted = await asyncio.to_thread(self.store.delete_under, deadline.prefixes(), deadline.cutoff)
        metrics.count_deleted([(v.key, v.size) for v in deleted], "deadline")
        if deadline.kind == DeadlineKind.TRAINED_PHOTOS:
            await self._complete_photo_deadlines(deadline, deleted)
        await self.audit.record(
            deadline.tenant,
            "data.deleted",
            deadline.subject_id,
            "ok",
            deadline.resource_id,
            purpose="retention",
        )
        return deleted

    async def _complete_photo_deadlines(self, deadline: Deadline, deleted: list[Version]) -> None:
        """The photos deleted after training no longer need their own deadlines."""
        photo_ids = {v.key.rsplit("/", 1)[-1] for v in deleted}
        for photo_id in photo_ids:
            key = deadline_key(deadline.tenant, deadline.subject_id, DeadlineKind.PHOTO, photo_id)
            found = await self.deadlines.get(key)
            if found is not None and not found[0].is_claimed(self.clock.now()):
                await self.deadlines.complete(key, found[1])

    async def forget_erasure_notice(self, tenant: str, subject_id: str) -> bool:
        return await history.forget_erasure_notice(
            self.platform.bus.js, tenant, subject_id, NOTICE_CONSUMERS, self.clock.now(), self._notice_age
        )

    @property
    def _notice_age(self) -> timedelta:
        return timedelta(hours=self.settings.erasure_notice_max_hours)

    async def fire_due(self) -> list[str]:
        """One pass over every deadline record: carries out the due ones this replica claims."""
        now = self.clock.now()
        fired = []
        for deadline, _ in sorted(await self.deadlines.all(), key=lambda item: item[0].due):
            if deadline.due <= now and await self.execute(deadline.key):
                fired.append(deadline.key)
            elif deadline.due > now:
                self.remember(deadline.due, deadline.key)
        return fired

    # ------------------------------------------------------------------------------------------ subjects

    def _still_due(self, now: datetime) -> Callable[[retention_pb2.Subject], bool]:
        def still_due(subject: retention_pb2.Subject) -> bool:
            due = subject_deadline(subject)
            return due is not None and due[0] <= now

        return still_due

    async def erase_if_due(self, tenant: str, subject_id: str) -> bool:
        """Starts the erasure of a subject whose deadline (inactivity or hard cap) has passed."""
        found = await self.records.get_subject(tenant, subject_id)
        if found is None or found[0].status != SS.SUBJECT_STATUS_ACTIVE:
            return False
        due = subject_deadline(found[0])
        now = self.clock.now()
        if due is None or due[0] > now:
            return False
        requested = await self.eraser.request(tenant, subject_id, f"retention.{due[1]}", self._still_due(now))
        return requested.started

    async def sweep_subjects(self, result: SweepResult) -> None:
        now = self.clock.now()
        for subject, _ in await self.records.all_subjects():
            if subject.status == SS.SUBJECT_STATUS_ACTIVE:
                due = subject_deadline(subject)
                if due is None:
                    continue
                if due[0] <= now:
                    if await self.erase_if_due(subject.tenant, subject.id):
                        result.subjects_erased += 1
                    else:
                        _overdue(result, now - due[0])
                else:
                    self.remember(due[0], f"{_SUBJECT_KEY}{subject.tenant}.{subject.id}")
            elif subject.status == SS.SUBJECT_STATUS_ERASED and subject.id:
                # A tombstone from before tombstones stopped naming the subject (after an upgrade).
                await self.eraser.conceal_tombstone(subject)
            elif subject.status == SS.SUBJECT_STATUS_ERASING:
                # Drives (or takes over) an erasure whose replica stopped; the lease keeps it single.
                erasure = (await self.eraser.request(subject.tenant, subject.id, "retention")).erasure
                requested = from_timestamp(erasure.requested_at) if erasure else None
                if requested is not None:
                    _overdue(result, now - requested)

    # ------------------------------------------------------------------------------------------ sweeps

    async def sweep(self) -> SweepResult:
        """A full pass: every due deadline, every due subject; updates the overdue gauges."""
        result = SweepResult()
        deleted_before = self.objects_deleted
        fired = await self.fire_due()
        result.fired = fired
        result.deadlines_fired = len(fired)
        await self.sweep_subjects(result)
        result.objects_deleted = self.objects_deleted - deleted_before
        now = self.clock.now()
        for deadline, _ in await self.deadlines.all():
            if deadline.due <= now:
                _overdue(result, now - deadline.due)
        metrics.OVERDUE.set(result.overdue)
        metrics.OLDEST_OVERDUE_SECONDS.set(result.oldest_overdue_seconds)
        # Last, so a NATS hiccup here skips nothing above: notices the rescan left (a service had not
        # acknowledged yet, or the rescan ran on another replica).
        await history.forget_acknowledged_notices(
            self.platform.bus.js, NOTICE_CONSUMERS, self.clock.now(), self._notice_age
        )
        return result

    def remember(self, due: datetime, key: str) -> None:
        """Keeps a deadline due before the next full pass in memory, so it fires on time."""
        horizon = self.clock.now() + timedelta(seconds=self.settings.sweep_interval_seconds)
        if due > horizon or (due, key) in self._known_set:
            return
        self._known_set.add((due, key))
        heapq.heappush(self._known, (due, key))
        if self._known[0] == (due, key):
            self._wake.set()

    async def fire_known(self) -> int:
        fired = 0
        now = self.clock.now()
        while self._known and self._known[0][0] <= now:
            entry = heapq.heappop(self._known)
            self._known_set.discard(entry)
            key = entry[1]
            if key.startswith(_SUBJECT_KEY):
                tenant, _, subject_id = key.removeprefix(_SUBJECT_KEY).partition(".")
                fired += int(await self.erase_if_due(tenant, subject_id))
            else:
                fired += int(await self.execute(key))
        return fired

    async def run(self) -> None:
        """Full passes every `sweep_interval_seconds` (the first at once), known deadlines on time between."""
        loop = asyncio.get_running_loop()
        next_full = loop.time()
        while True:
            try:
                if loop.time() >= next_full:
                    next_full = loop.time() + self.settings.sweep_interval_seconds
                    await self.sweep()
                else:
                    await self.fire_known()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reaper pass failed; the next one retries")
            wait = next_full - loop.time()
            if self._known:
                wait = min(wait, (self._known[0][0] - self.clock.now()).total_seconds())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.05))


def _overdue(result: SweepResult, age: timedelta) -> None:
    result.overdue += 1
    result.oldest_overdue_seconds = max(result.oldest_overdue_seconds, age.total_seconds())
