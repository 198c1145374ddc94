"""A short-lived read cache of trainings and renders, so clients that poll a job cost no backend round trip.

Polling `GET /v1/trainings/{id}` (or a render) is the common load: many clients, each asking every second
or so. The cache keeps what the gateway answered (the record's subject and the JSON body) by (tenant,
job id), for `LIKENESS_JOB_CACHE_SECONDS` (0 turns it off). It only saves the read: every request is still
authorized from the cached data (the token's tenant is part of the key, an end-user token must own the
job's subject, and the subject must be live, see `access.live_subject_cached`).

Staleness is bounded twice:
- any event of the job's subject (`evt.<tenant>.<subject>.training.*` / `.render.*`, and
  `subject.erased`), heard by every replica on a plain NATS subscription, drops the subject's jobs at
  once; so does this gateway's own cancel;
- an entry is never served after `ttl` seconds from the moment its read *started*, whatever was missed
  (NATS down, or changes no event announces: a render's progress, a training leaving the queue).

A read that was in flight while its subject was invalidated is not stored (the answer may predate the
event): `stamp()` before the read, `put(..., stamp)` after it. Nothing is stored while the event feed is
down (`listening`), and losing the feed drops everything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.single_flight import SingleFlight

#: Entries (and remembered invalidations) kept per replica before everything is dropped at once.
MAX_ENTRIES = 10_000

SubjectKey = tuple[str, str]


class Invalidations:
    """Which subjects ((tenant, subject) pairs) were invalidated since a read began, so that a read that
    raced an invalidation is not remembered: `stamp()` before the read, `since(key, stamp)` after it.

    Bounded: beyond `max_entries` the record is cleared and every read stamped before then counts as
    raced (a few reads not remembered, never one remembered wrongly)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._generation = 0
        self._floor = 0
        self._at: dict[SubjectKey, int] = {}

    def stamp(self) -> int:
        return self._generation

    def invalidate(self, key: SubjectKey) -> None:
        self._generation += 1
        if len(self._at) >= self.max_entries:
            self._at.clear()
            self._floor = self._generation
        self._at[key] = self._generation

    def invalidate_all(self) -> None:
        self._generation += 1
        self._floor = self._generation
        self._at.clear()

    def since(self, key: SubjectKey, stamp: int) -> bool:
        return stamp < self._floor or self._at.get(key, -1) > stamp


@dataclass(frozen=True, slots=True)
class CachedJob:
    subject_id: str
    #: The JSON the route answered (ids, status, progress and times: nothing personal).
    body: bytes
    expires: float


@dataclass(frozen=True, slots=True)
class Stamp:
    generation: int
    started: float


class JobCache:
    def __init__(
        self, ttl: float, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[tuple[str, str], CachedJob] = {}
        #: (tenant, subject) -> the job ids cached for it, so a subject's event drops them all.
        self._by_subject: dict[SubjectKey, set[str]] = {}
        self._invalidations = Invalidations(max_entries)
        #: Set while the event feed is subscribed: without it nothing is stored (no event could drop it).
        self.listening = False
        #: Concurrent misses of one job share one backend read (only while caching is on).
        self.reads: SingleFlight[tuple[str, str], tuple[str, bytes]] = SingleFlight()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def stamp(self) -> Stamp:
        """Taken before a read: the generation and the time the read started."""
        return Stamp(self._invalidations.stamp(), self.clock())

    def get(self, tenant: str, job_id: str) -> CachedJob | None:
        entry = self._entries.get((tenant, job_id))
        if entry is None:
            return None
        if self.clock() >= entry.expires:
            self._drop(tenant, job_id, entry.subject_id)
            return None
        return entry

    def put(self, tenant: str, job_id: str, subject_id: str, body: bytes, stamp: Stamp) -> None:
        if not (self.enabled and self.listening):
            return
        subject_key = (tenant, subject_id)
        if self._invalidations.since(subject_key, stamp.generation):
            return  # the subject changed while this was read: the answer may be older than the event
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # rare: a bound, not an eviction policy worth more code
            self._by_subject.clear()
        self._entries[(tenant, job_id)] = CachedJob(subject_id, body, stamp.started + self.ttl)
        self._by_subject.setdefault(subject_key, set()).add(job_id)

    def invalidate_subject(self, tenant: str, subject_id: str) -> None:
        """Drops every cached job of the subject, and any read of them in flight now."""
        subject_key = (tenant, subject_id)
        self._invalidations.invalidate(subject_key)
        for job_id in self._by_subject.pop(subject_key, ()):
            self._entries.pop((tenant, job_id), None)

    def clear(self) -> None:
        """Forget everything (e.g. when the event feed was lost: what it would have said is unknown)."""
        self._invalidations.invalidate_all()
        self._entries.clear()
        self._by_subject.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, tenant: str, job_id: str, subject_id: str) -> None:
        self._entries.pop((tenant, job_id), None)
        jobs = self._by_subject.get((tenant, subject_id))
        if jobs is not None:
            jobs.discard(job_id)
            if not jobs:
                del self._by_subject[(tenant, subject_id)]
