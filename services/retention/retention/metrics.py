"""Prometheus metrics of retention (served on `/metrics` by the shared MetricsServer).

Labels come from fixed sets (object kinds, causes, stages), never ids or tenants.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

from retention.deadlines import DeadlineKind
from retention.storage import KINDS, kind_of

OBJECT_KINDS = frozenset({*KINDS.values(), "other"})
#: Why something was deleted: an erasure, a per-kind deadline, an orphan sweep, a late write after erasure.
REASONS = frozenset({"erasure", "deadline", "orphan", "late"})
CAUSES = frozenset({"request", "inactivity", "hard_cap", "consent_withdrawn", "other"})

DELETED_OBJECTS = Counter(
    "likeness_retention_deleted_objects",
    "Object versions deleted, by kind of data and reason",
    ["kind", "reason"],
)
DELETED_BYTES = Counter(
    "likeness_retention_deleted_bytes",
    "Bytes of object versions deleted, by kind of data and reason",
    ["kind", "reason"],
)
KEYS_DESTROYED = Counter("likeness_retention_keys_destroyed", "Subject keys destroyed, by reason", ["reason"])
ERASURES = Counter("likeness_retention_erasures", "Erasures completed, by cause", ["cause"])
ERASURE_RETRIES = Counter(
    "likeness_retention_erasure_retries", "Erasure steps that failed and will be retried, by stage", ["stage"]
)
ERASURE_SECONDS = Histogram(
    "likeness_retention_erasure_seconds",
    "Time from the erasure request to the key destroyed and to the purge complete",
    ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600),
)
OVERDUE = Gauge(
    "likeness_retention_overdue",
    "Deadlines past due and not yet carried out (per-object deadlines and whole subjects)",
)
OLDEST_OVERDUE_SECONDS = Gauge(
    "likeness_retention_oldest_overdue_seconds", "Age of the oldest deadline past due and not carried out"
)
DEADLINES_FIRED = Counter(
    "likeness_retention_deadlines_fired", "Per-object deadlines carried out, by deadline kind", ["kind"]
)


ERASURES_IN_PROGRESS = Gauge(
    "likeness_retention_erasures_in_progress",
    "Erasures requested and not yet completed that this replica is driving (the erasure backlog)",
)
OLDEST_ERASURE_IN_PROGRESS_SECONDS = Gauge(
    "likeness_retention_oldest_erasure_in_progress_seconds",
    "Time since the request of the oldest erasure this replica is still driving; 0 when none",
)


class ErasureBacklog:
    """The erasures this replica drives (by id, with their request time), read by the two gauges above."""

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._requested: dict[str, datetime] = {}
        self._now = now

    def started(self, erasure_id: str, requested_at: datetime) -> None:
        self._requested[erasure_id] = requested_at

    def ended(self, erasure_id: str) -> None:
        self._requested.pop(erasure_id, None)

    def count(self) -> int:
        return len(self._requested)

    def oldest_seconds(self) -> float:
        if not self._requested:
            return 0.0
        return max(0.0, (self._now() - min(self._requested.values())).total_seconds())


BACKLOG = ErasureBacklog()
ERASURES_IN_PROGRESS.set_function(BACKLOG.count)
OLDEST_ERASURE_IN_PROGRESS_SECONDS.set_function(BACKLOG.oldest_seconds)

# Every series of a fixed label set exists from the start (at 0), so rates and alerts read 0, not nothing.
for _kind in OBJECT_KINDS:
    for _reason in REASONS:
        DELETED_OBJECTS.labels(kind=_kind, reason=_reason)
        DELETED_BYTES.labels(kind=_kind, reason=_reason)
for _reason in ("erasure", "orphan"):
    KEYS_DESTROYED.labels(reason=_reason)
for _cause in CAUSES:
    ERASURES.labels(cause=_cause)
for _stage in ("key", "purge", "receipt"):
    ERASURE_RETRIES.labels(stage=_stage)
for _deadline_kind in DeadlineKind:
    DEADLINES_FIRED.labels(kind=_deadline_kind.value)


def cause_label(cause: str) -> str:
    label = cause.removeprefix("retention.")
    return label if label in CAUSES else "other"


def count_deleted(keys_and_sizes: list[tuple[str, int]], reason: str) -> None:
    assert reason in REASONS
    for key, size in keys_and_sizes:
        kind = kind_of(key)
        DELETED_OBJECTS.labels(kind=kind, reason=reason).inc()
        DELETED_BYTES.labels(kind=kind, reason=reason).inc(size)
