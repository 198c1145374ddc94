"""GPU-seconds accounting (`likeness.gpu_usage`) with a stand-in bucket: what a worker writes, and when."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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


def _charging(bus: FakeBus, kind: str, clock: Clock, today: Callable[[], datetime]) -> GpuUsage:
    """A worker's usage that charges running jobs every 10 ms (15 s in production)."""
    return GpuUsage(bus, kind, instance="w1", clock=clock, today=today, charge_interval_seconds=0.01)  # type: ignore[arg-type]


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


async def test_a_running_job_is_charged_while_it_runs_not_only_when_it_ends() -> None:
    """A long training spends its tenant's day while it runs: the serve roles see it within the interval."""
    bus, clock = FakeBus(), Clock()
    usage = _charging(bus, "train", clock, lambda: DAY_ONE)
    key = "20261205.acme.train.w1"
    async with usage.held("acme"):
        clock.now += 30.0
        await _until(lambda: bus.bucket.values.get(key) == b"30.000")
        clock.now += 12.0
        await _until(lambda: bus.bucket.values.get(key) == b"42.000")
        clock.now += 0.5
    assert bus.bucket.values == {key: b"42.500"}, "the rest is charged when the job ends, nothing twice"


async def test_a_job_across_midnight_splits_its_seconds_between_the_days() -> None:
    bus, clock = FakeBus(), Clock()
    today = [DAY_ONE]
    usage = _charging(bus, "render", clock, lambda: today[0])
    async with usage.held("acme"):
        clock.now += 10.0
        await _until(lambda: bus.bucket.values.get("20261205.acme.render.w1") == b"10.000")
        today[0] = DAY_TWO
        clock.now += 4.0
    assert bus.bucket.values == {"20261205.acme.render.w1": b"10.000", "20261206.acme.render.w1": b"4.000"}


async def test_a_charge_that_cannot_be_written_is_carried_by_the_next() -> None:
    bus, clock = FakeBus(), Clock()
    usage = _charging(bus, "train", clock, lambda: DAY_ONE)
    async with usage.held("acme"):
        bus.bucket.failing = True
        clock.now += 20.0
        await asyncio.sleep(0.05)  # charges try to write and fail
        assert bus.bucket.values == {}
        bus.bucket.failing = False
        clock.now += 1.0
    assert bus.bucket.values == {"20261205.acme.train.w1": b"21.000"}
