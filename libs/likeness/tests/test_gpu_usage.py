"""GPU-seconds accounting (`likeness.gpu_usage`) with a stand-in bucket: what a worker writes, and when."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from likeness.gpu_usage import GpuUsage, usage_key, usage_kind
from likeness.provisioning import GPU_USAGE_BUCKET, RENDER_STREAM, TRAIN_STREAM


class Bucket:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.failing = False

    async def put(self, key: str, value: bytes) -> int:
        if self.failing:
            raise RuntimeError("bucket unavailable")
        self.values[key] = value
        return len(self.values)


class FakeBus:
    def __init__(self) -> None:
        self.bucket = Bucket()

    async def kv(self, name: str) -> Any:
        assert name == GPU_USAGE_BUCKET
        return self.bucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


DAY_ONE = datetime(2026, 12, 5, 23, 0, tzinfo=UTC)
DAY_TWO = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)


def test_each_queue_writes_its_own_kind_of_key() -> None:
    assert (usage_kind(TRAIN_STREAM), usage_kind(RENDER_STREAM)) == ("train", "render")
    assert usage_key("20261205", "acme", "train", "ab12") == "20261205.acme.train.ab12"


async def test_held_seconds_add_up_per_tenant_and_day_under_the_workers_own_key() -> None:
    bus, clock = FakeBus(), Clock()
    today = [DAY_ONE]
    usage = GpuUsage(bus, "render", instance="w1", clock=clock, today=lambda: today[0])  # type: ignore[arg-type]
    for seconds in (2.5, 4.0):
        async with usage.held("acme"):
            clock.now += seconds
    async with usage.held("globex"):
        clock.now += 1.0
    assert bus.bucket.values == {"20261205.acme.render.w1": b"6.500", "20261205.globex.render.w1": b"1.000"}

    today[0] = DAY_TWO  # a new UTC day starts from zero
    async with usage.held("acme"):
        clock.now += 3.0
    assert bus.bucket.values["20261206.acme.render.w1"] == b"3.000"


async def test_a_failed_job_counts_too_and_its_error_goes_on() -> None:
    bus, clock = FakeBus(), Clock()
    usage = GpuUsage(bus, "train", instance="w1", clock=clock, today=lambda: DAY_ONE)  # type: ignore[arg-type]

    async def failing_job() -> None:
        async with usage.held("acme"):
            clock.now += 7.0
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await failing_job()
    assert bus.bucket.values == {"20261205.acme.train.w1": b"7.000"}


async def test_an_unwritable_bucket_loses_no_total_and_stops_no_job() -> None:
    bus, clock = FakeBus(), Clock()
    usage = GpuUsage(bus, "train", instance="w1", clock=clock, today=lambda: DAY_ONE)  # type: ignore[arg-type]
    bus.bucket.failing = True
    async with usage.held("acme"):
        clock.now += 5.0
    bus.bucket.failing = False
    async with usage.held("acme"):
        clock.now += 1.0
    assert bus.bucket.values == {"20261205.acme.train.w1": b"6.000"}, "the next write carries the whole total"
