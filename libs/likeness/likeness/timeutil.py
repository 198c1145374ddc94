"""Time in one place: protobuf timestamps, and a clock that tests can control.

Code that decides *when* something happens (retention deadlines, leases, receipts) takes a `Clock` instead
of reading the system time, so tests can move time forward by days without waiting for it:

    clock = ManualClock()              # starts at the real current time
    clock.advance(timedelta(days=30))  # every deadline due within 30 days is now due
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from google.protobuf.timestamp_pb2 import Timestamp


class Clock(Protocol):
    def now(self) -> datetime:
        """The current moment, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to (thread-safe: services read it from worker threads too)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, by: timedelta) -> datetime:
        if by < timedelta(0):
            raise ValueError("a clock never goes back")
        with self._lock:
            self._now += by
            return self._now

    def set(self, moment: datetime) -> datetime:
        moment = moment.astimezone(UTC)
        with self._lock:
            if moment < self._now:
                raise ValueError("a clock never goes back")
            self._now = moment
            return self._now


SYSTEM_CLOCK = SystemClock()


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def now_timestamp(clock: Clock = SYSTEM_CLOCK) -> Timestamp:
    return to_timestamp(clock.now())


def from_timestamp(stamp: Timestamp) -> datetime | None:
    """None for an unset timestamp (seconds and nanos both zero)."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC)


def to_rfc3339(moment: datetime) -> str:
    """UTC with a `Z` and microseconds only when present, e.g. `2026-01-31T09:30:00Z` (stable for signing)."""
    text = moment.astimezone(UTC).replace(tzinfo=None).isoformat()
    return text + "Z"


def from_rfc3339(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("a timestamp must name its time zone")
    return moment.astimezone(UTC)
