"""A bounded LRU, with a time to live, of a subject's decrypted material held by a render worker.

A worker renders the same people again and again (several styles, retries, a team's renders), so it keeps
their decrypted LoRA bytes (and face templates) in RAM instead of going to S3 and Vault for each job.
That copy is personal data outside its envelope, so it is kept short and small: at most `max_entries`
entries and `max_bytes` bytes, each for at most `ttl_seconds` after it was stored (not refreshed by use),
and everything of a subject is dropped the moment `evt.subject.erased` arrives (`purge_subject`). A purged
subject is remembered for one TTL so that a decryption still in flight at that moment is not cached.

Entries are dropped, never written anywhere. Python cannot wipe immutable bytes, so "dropped" means the
last reference goes and the allocator reuses the memory; the cache never hands out its only copy.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

# Metrics carry no ids: counts and sizes only.
CACHE_ENTRIES = Gauge("likeness_renderer_subject_cache_entries", "Decrypted LoRAs/templates held in RAM")
CACHE_BYTES = Gauge("likeness_renderer_subject_cache_bytes", "Bytes of decrypted material held in RAM")
CACHE_LOOKUPS = Counter(
    "likeness_renderer_subject_cache_lookups_total", "Cache lookups by result", ["result"]
)
CACHE_DROPS = Counter(
    "likeness_renderer_subject_cache_dropped_total",
    "Entries dropped, by reason (capacity, expired, erased)",
    ["reason"],
)
# Every reason and result exists from the start (at 0), so rates read 0 rather than nothing.
for _reason in ("capacity", "expired", "erased", "replaced", "cleared"):
    CACHE_DROPS.labels(_reason)
for _result in ("hit", "miss"):
    CACHE_LOOKUPS.labels(_result)


@dataclass(frozen=True)
class CacheKey:
    tenant: str
    subject_id: str
    item: str  # what of the subject: "lora/<training_id>", "faces"


@dataclass
class _Entry:
    value: bytes
    stored_at: float


class SubjectCache:
    """Thread-safe; `clock` is injectable for tests (defaults to time.monotonic)."""

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._purged: dict[tuple[str, str], float] = {}  # (tenant, subject) -> when
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total_bytes(self) -> int:
        return self._bytes

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_bytes > 0 and self.ttl_seconds > 0

    def get(self, key: CacheKey) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._expired(entry):
                self._drop(key, "expired")
                entry = None
            if entry is None:
                CACHE_LOOKUPS.labels("miss").inc()
                return None
            self._entries.move_to_end(key)
            CACHE_LOOKUPS.labels("hit").inc()
            return entry.value

    def put(self, key: CacheKey, value: bytes) -> None:
        if not self.enabled or len(value) > self.max_bytes:
            return
        with self._lock:
            purged_at = self._purged.get((key.tenant, key.subject_id))
            if purged_at is not None and self._clock() - purged_at < self.ttl_seconds:
                return
            if key in self._entries:
                self._drop(key, "replaced")
            self._entries[key] = _Entry(value, self._clock())
            self._bytes += len(value)
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                oldest = next(iter(self._entries))
                self._drop(oldest, "capacity")
            self._publish()

    def contains_subject(self, tenant: str, subject_id: str) -> bool:
        with self._lock:
            return any(k.tenant == tenant and k.subject_id == subject_id for k in self._entries)

    def purge_subject(self, tenant: str, subject_id: str, reason: str = "erased") -> int:
        """Drops everything of one subject; returns how many entries went."""
        with self._lock:
            self._purged[(tenant, subject_id)] = self._clock()
            doomed = [k for k in self._entries if k.tenant == tenant and k.subject_id == subject_id]
            for key in doomed:
                self._drop(key, reason)
            self._publish()
            return len(doomed)

    def purge_expired(self) -> int:
        with self._lock:
            doomed = [key for key, entry in self._entries.items() if self._expired(entry)]
            for key in doomed:
                self._drop(key, "expired")
            now = self._clock()
            for subject in [s for s, at in self._purged.items() if now - at >= self.ttl_seconds]:
                del self._purged[subject]
            self._publish()
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            for key in list(self._entries):
                self._drop(key, "cleared")
            self._publish()

    def _expired(self, entry: _Entry) -> bool:
        return self._clock() - entry.stored_at >= self.ttl_seconds

    def _drop(self, key: CacheKey, reason: str) -> None:
        # Called with the lock held.
        entry = self._entries.pop(key)
        self._bytes -= len(entry.value)
        CACHE_DROPS.labels(reason).inc()
        self._publish()

    def _publish(self) -> None:
        CACHE_ENTRIES.set(len(self._entries))
        CACHE_BYTES.set(self._bytes)
