"""QueueWorker (shared by the trainer and renderer workers) against a real JetStream work queue."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.js.api import RetentionPolicy, StreamConfig

from likeness.bus import Bus
from likeness.config import CommonSettings
from likeness.jobs import CancelFlag, JobCancelled, JobRecords, PermanentJobFailure, QueueWorker
from likeness.runtime import Platform
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, jobs_pb2, trainer_pb2
from likeness_dev.testing import private_tenant_queues, provisioned_kv

JS = common_pb2.JobStatus


class ScriptedWorker(QueueWorker[jobs_pb2.TrainJob, trainer_pb2.Training]):
    """Runs each job by the behaviour named in its first photo id."""

    job_type = jobs_pb2.TrainJob

    def __init__(self, platform: Platform, records: JobRecords[trainer_pb2.Training], stream: str) -> None:
        super().__init__(platform, records, ack_wait=5.0, max_deliver=2)
        self.runs: list[str] = []
        self.finished: dict[str, tuple[int, str]] = {}
        self.finished_on_delivery: dict[str, int] = {}

    def identify(self, job: jobs_pb2.TrainJob) -> tuple[str, str, str]:
        return job.tenant, job.subject_id, job.training_id

    async def run_job(self, job: jobs_pb2.TrainJob, flag: CancelFlag) -> None:
        self.runs.append(job.training_id)
        behaviour = job.photo_ids[0]
        if behaviour == "flaky":
            raise RuntimeError("transient")
        if behaviour == "poison":
            raise PermanentJobFailure("the input cannot be used")
        if behaviour == "wait-for-cancel":
            while not flag.is_set():  # noqa: ASYNC110 - the flag is a threading.Event set by another task
                await asyncio.sleep(0.05)
            raise JobCancelled

        def succeed(record: trainer_pb2.Training) -> bool:
            record.status = JS.JOB_STATUS_SUCCEEDED
            return True

        await self.records.mutate(job.tenant, job.training_id, succeed)

    async def finish(
        self, job: jobs_pb2.TrainJob, status: common_pb2.JobStatus.ValueType, reason: str
    ) -> None:
        self.finished[job.training_id] = (status, reason)
        self.finished_on_delivery[job.training_id] = self.delivery


@pytest.fixture
async def harness(settings: CommonSettings) -> AsyncIterator[tuple[ScriptedWorker, Bus, str]]:
    platform = await Platform.connect(settings, "jobs-test")
    stream = f"TESTJOBS{uuid.uuid4().hex[:8].upper()}"
    await platform.bus.js.add_stream(
        StreamConfig(name=stream, subjects=[f"{stream.lower()}.>"], retention=RetentionPolicy.WORK_QUEUE)
    )
    records = JobRecords(
        await provisioned_kv(platform.bus, f"{stream.lower()}-records"), trainer_pb2.Training
    )
    worker = ScriptedWorker(platform, records, stream)
    await private_tenant_queues(platform.bus.js, stream, worker, ["t"])
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    yield worker, platform.bus, stream
    stop.set()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(task, timeout=10)
    await platform.bus.js.delete_stream(stream)
    await platform.close()


async def _submit(
    worker: ScriptedWorker, bus: Bus, stream: str, behaviour: str, status: int = JS.JOB_STATUS_QUEUED
) -> str:
    training_id = f"trn_{uuid.uuid4().hex}"
    record = trainer_pb2.Training(
        id=training_id, tenant="t", subject_id="sub_x", status=status, created_at=now_timestamp()
    )
    await worker.records.create(record)
    job = jobs_pb2.TrainJob(training_id=training_id, tenant="t", subject_id="sub_x", photo_ids=[behaviour])
    await bus.publish(f"{stream.lower()}.t.sub_x", job, msg_id=training_id)
    return training_id


async def _until(condition: object, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_a_job_runs_once_and_a_terminal_one_is_skipped(
    harness: tuple[ScriptedWorker, Bus, str],
) -> None:
    worker, bus, stream = harness
    done = await _submit(worker, bus, stream, "ok")
    skipped = await _submit(worker, bus, stream, "ok", status=JS.JOB_STATUS_CANCELLED)
    await _until(lambda: done in worker.runs)
    await asyncio.sleep(0.5)
    assert worker.runs.count(done) == 1
    assert skipped not in worker.runs, "a job cancelled while queued never runs"


async def test_poison_fails_at_once_and_transient_failures_retry_then_fail(
    harness: tuple[ScriptedWorker, Bus, str],
) -> None:
    worker, bus, stream = harness
    poison = await _submit(worker, bus, stream, "poison")
    flaky = await _submit(worker, bus, stream, "flaky")
    await _until(lambda: poison in worker.finished and flaky in worker.finished)
    assert worker.finished[poison] == (JS.JOB_STATUS_FAILED, "the input cannot be used")
    assert worker.runs.count(poison) == 1
    assert worker.runs.count(flaky) == 2, "redelivered up to MaxDeliver"
    assert worker.finished[flaky][0] == JS.JOB_STATUS_FAILED
    assert "2 attempts" in worker.finished[flaky][1]
    # What `finish` reads to count a failure on the last delivery as dead-lettered.
    assert worker.finished_on_delivery == {poison: 1, flaky: 2}


async def test_cancel_on_request_stops_a_running_job(harness: tuple[ScriptedWorker, Bus, str]) -> None:
    worker, bus, stream = harness
    worker.ack_wait = 1.5  # heartbeats (which poll for cancellation) every 0.5 s
    running = await _submit(worker, bus, stream, "wait-for-cancel")
    await _until(lambda: running in worker.runs)

    def cancel(record: trainer_pb2.Training) -> bool:
        record.status = JS.JOB_STATUS_CANCELLED
        return True

    await worker.records.mutate("t", running, cancel)
    await _until(lambda: running in worker.finished)
    assert worker.finished[running] == (JS.JOB_STATUS_CANCELLED, "cancelled on request")
