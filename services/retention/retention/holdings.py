"""What is held about one subject, per category, with each item's deletion date: the one place that computes
it, for the person's summary (`GET /v1/subjects/{id}/summary`) and the deletion dates of their export.

Objects are counted from the bucket itself (every stored version under the subject's prefix, so what is
reported is what storage really holds, not what records say should be there); consent grants from the
subject's consent record. Each item's deletion date is the earliest that applies of: its own deadline
(`retention.deadlines`; or, before the event that schedules it has been handled, the same rule computed from
the schedule and the item's storage time), the deletion after training of photos stored before a training
(when the schedule has it), and the subject's own deadline (the hard cap, or inactivity). The rule that
sets it is named, so a person can see why that date. Pure: `describe` takes what was read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from likeness.consent import is_live
from likeness.object_names import subject_prefix
from likeness.timeutil import to_timestamp
from likeness.v1 import retention_pb2
from retention.deadlines import Deadline, DeadlineKind
from retention.schedule import model_deadline, photo_deadline, render_deadline, subject_deadline
from retention.storage import Version

#: Category names, in the order they are reported.
CATEGORIES = ("photos", "face_templates", "models", "renders", "images", "consents", "processing_log")
#: Rules as reported (`HeldItem.deletion_rule`).
RULE_OF_KIND = {
    DeadlineKind.PHOTO: "photos_days",
    DeadlineKind.MODEL: "models_days",
    DeadlineKind.RENDER: "renders_days",
    DeadlineKind.TRAINED_PHOTOS: "photos_deleted_after_training",
}
AUDIT_RULE = "audit_retention"


@dataclass(frozen=True)
class LogHoldings:
    """The person's processing log as far as the holdings are concerned: how many records, their size, the
    newest one's time, and when the audit stream drops the newest (records outlive the data: they hold no
    personal content, only the person's pseudonym)."""

    count: int
    bytes: int
    newest_at: datetime | None
    kept_until: datetime | None


@dataclass
class _Object:
    """One stored object (every version of one key)."""

    key: str
    versions: int = 0
    bytes: int = 0
    stored_at: datetime | None = None
    newest_at: datetime | None = None

    def add(self, version: Version) -> None:
        self.versions += 1
        self.bytes += version.size
        moment = version.last_modified
        if moment is not None:
            self.stored_at = min(self.stored_at or moment, moment)
            self.newest_at = max(self.newest_at or moment, moment)


def _objects(prefix: str, versions: Iterable[Version]) -> list[_Object]:
    by_key: dict[str, _Object] = {}
    for version in versions:
        # A delete marker (size 0; every stored envelope has a header) hides a key but holds nothing.
        if version.size <= 0 or not version.key.startswith(prefix):
            continue
        by_key.setdefault(version.key, _Object(version.key)).add(version)
    return sorted(by_key.values(), key=lambda found: found.key)


class _Dates:
    """Deletion dates: the earliest of the item's own rule and the subject's; the subject's wins a tie."""

    def __init__(self, subject: retention_pb2.Subject, deadlines: Iterable[Deadline]) -> None:
        self.subject = subject
        self.own = {(d.kind, d.resource_id): d for d in deadlines}
        self.after_training = [d for d in self.own.values() if d.kind == DeadlineKind.TRAINED_PHOTOS]
        self.whole = subject_deadline(subject)

    def of(
        self,
        kind: DeadlineKind,
        resource_id: str,
        stored: _Object,
        by_schedule: Callable[[retention_pb2.RetentionSchedule, datetime], datetime],
    ) -> tuple[datetime | None, str]:
        candidates: list[tuple[datetime, int, str]] = []
        if self.whole is not None:
            candidates.append((self.whole[0], 0, self.whole[1]))
        own = self.own.get((kind, resource_id))
        if own is not None:
            candidates.append((own.due, 1, RULE_OF_KIND[kind]))
        elif stored.stored_at is not None:
            candidates.append((by_schedule(self.subject.retention, stored.stored_at), 1, RULE_OF_KIND[kind]))
        if kind == DeadlineKind.PHOTO and stored.newest_at is not None:
            for deadline in self.after_training:
                if deadline.cutoff is not None and stored.newest_at <= deadline.cutoff:
                    candidates.append((deadline.due, 1, RULE_OF_KIND[DeadlineKind.TRAINED_PHOTOS]))
        if not candidates:
            return None, ""
        due, _, rule = min(candidates)
        return due, rule


def _item(
    item_id: str, stored: _Object, due: datetime | None, rule: str, parent_id: str = ""
) -> retention_pb2.HeldItem:
    item = retention_pb2.HeldItem(
        id=item_id, parent_id=parent_id, bytes=stored.bytes, versions=stored.versions, deletion_rule=rule
    )
    if stored.stored_at is not None:
        item.stored_at.CopyFrom(to_timestamp(stored.stored_at))
    if due is not None:
        item.delete_by.CopyFrom(to_timestamp(due))
    return item


def describe(
    subject: retention_pb2.Subject,
    versions: Iterable[Version],
    deadlines: Iterable[Deadline],
    grants: Iterable[retention_pb2.ConsentGrant],
    log: LogHoldings | None,
    now: datetime,
) -> retention_pb2.DescribeHoldingsResponse:
    """The holdings of `subject` from its stored object versions, deadlines, consent history and log."""
    prefix = subject_prefix(subject.tenant, subject.id)
    dates = _Dates(subject, deadlines)
    items: dict[str, list[retention_pb2.HeldItem]] = defaultdict(list)
    models: dict[str, _Object] = {}
    renders: dict[str, _Object] = {}
    for stored in _objects(prefix, versions):
        parts = stored.key[len(prefix) :].split("/")
        match parts:
            case ["photos", photo_id]:
                items["photos"].append(
                    _item(photo_id, stored, *dates.of(DeadlineKind.PHOTO, photo_id, stored, photo_deadline))
                )
            case ["faces", photo_id]:
                items["face_templates"].append(
                    _item(photo_id, stored, *dates.of(DeadlineKind.PHOTO, photo_id, stored, photo_deadline))
                )
            case ["models", training_id, "faces"]:
                due, rule = dates.of(DeadlineKind.MODEL, training_id, stored, model_deadline)
                items["face_templates"].append(_item(training_id, stored, due, rule, parent_id=training_id))
            case ["models", training_id, _]:  # the LoRA and its checkpoints: one model
                _merge(models, training_id, stored)
            case ["renders", render_id, image_id]:
                due, rule = dates.of(DeadlineKind.RENDER, render_id, stored, render_deadline)
                items["images"].append(_item(image_id, stored, due, rule, parent_id=render_id))
                _merge(renders, render_id, stored)
            case _:
                items["other"].append(_item(stored.key[len(prefix) :], stored, *_whole(dates)))
    for training_id, stored in sorted(models.items()):
        items["models"].append(
            _item(training_id, stored, *dates.of(DeadlineKind.MODEL, training_id, stored, model_deadline))
        )
    for render_id, stored in sorted(renders.items()):
        items["renders"].append(
            _item(render_id, stored, *dates.of(DeadlineKind.RENDER, render_id, stored, render_deadline))
        )
    grants = list(grants)
    for grant in grants:
        # Kept with the subject's record (not in the bucket) and dropped with the subject.
        consent = retention_pb2.HeldItem(id=grant.id, versions=1, deletion_rule=_whole(dates)[1])
        consent.stored_at.CopyFrom(grant.granted_at)
        if dates.whole is not None:
            consent.delete_by.CopyFrom(to_timestamp(dates.whole[0]))
        items["consents"].append(consent)
    if log is not None:
        entry = retention_pb2.HeldItem(
            id="log", versions=log.count, bytes=log.bytes, deletion_rule=AUDIT_RULE
        )
        if log.kept_until is not None:
            entry.delete_by.CopyFrom(to_timestamp(log.kept_until))
        items["processing_log"].append(entry)

    answer = retention_pb2.DescribeHoldingsResponse(
        tenant=subject.tenant,
        subject_id=subject.id,
        live_grants=[grant for grant in grants if is_live(grant, now)],
        described_at=to_timestamp(now),
    )
    for name in (*CATEGORIES, "other"):
        listed = items.get(name, [])
        if name == "other" and not listed:
            continue
        count = listed[0].versions if name == "processing_log" and listed else len(listed)
        answer.categories.append(
            retention_pb2.HeldCategory(
                name=name, count=count, bytes=sum(item.bytes for item in listed), items=listed
            )
        )
    if dates.whole is not None:
        answer.delete_by.CopyFrom(to_timestamp(dates.whole[0]))
        answer.deletion_rule = dates.whole[1]
    if log is not None and log.newest_at is not None:
        answer.last_access_at.CopyFrom(to_timestamp(log.newest_at))
        answer.last_access_source = "processing_log"
    elif subject.HasField("last_activity_at"):
        answer.last_access_at.CopyFrom(subject.last_activity_at)
        answer.last_access_source = "activity"
    return answer


def _merge(into: dict[str, _Object], item_id: str, stored: _Object) -> None:
    """Adds one object's versions to a composite item (a model's LoRA and checkpoints; a render's images)."""
    whole = into.setdefault(item_id, _Object(item_id))
    whole.versions += stored.versions
    whole.bytes += stored.bytes
    for moment in (stored.stored_at, stored.newest_at):
        if moment is not None:
            whole.stored_at = min(whole.stored_at or moment, moment)
            whole.newest_at = max(whole.newest_at or moment, moment)


def _whole(dates: _Dates) -> tuple[datetime | None, str]:
    return dates.whole if dates.whole is not None else (None, "")
