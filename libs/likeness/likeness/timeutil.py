"""Time in one place: protobuf timestamps, and a clock that tests can control."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def now_timestamp() -> Timestamp:
    return to_timestamp(utcnow())


def from_timestamp(stamp: Timestamp) -> datetime | None:
    """None for an unset timestamp (seconds and nanos both zero)."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    return stamp.ToDatetime(tzinfo=UTC)
