"""What the trainer relies on from the shared QueueWorker (likeness.jobs), against a real JetStream:
a job whose every attempt died is failed, not left running; changed AckWait/MaxDeliver settings reach the
consumer; a cancellation written to the record reaches the running job at once, not at the next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from nats.js.api import RetentionPolicy, StreamConfig

from likeness import ids
from likeness.config import CommonSettings
from likeness.jobs import CANCELLED_ON_REQUEST, CancelFlag, JobCancelled, JobRecords, QueueWorker, stop_task
from likeness.provisioning import TenantQueues
from likeness.runtime import Platform
from likeness.tenant_queues import QueueScheduler
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, jobs_pb2, trainer_pb2
from likeness_dev.infra import Infra
from likeness_dev.testing import private_tenant_queues, provisioned_kv

JS = common_pb2.JobStatus


class HangingWorker(QueueWorker[jobs_pb2.TrainJob, trainer_pb2.Training]):
    """Runs every job until it is cancelled (or the worker task itself is, like a killed process)."""

    job_type = jobs_pb2.TrainJob
    reserve_final_delivery = True

    def __init__(
        self, platform: Platform, records: JobRecords[trainer_pb2.Training], stream: str, ack_wait: float
    ) -> None:
        super().__init__(platform, records, ack_wait=ack_wait, max_deliver=1)
        self.queues = TenantQueues("test", stream, prioritized=False, prefix=stream.lower())
        self.started: list[str] = []
        self.finished: dict[str, tuple[int, str]] = {}

    def identify(self, job: jobs_pb2.TrainJob) -> tuple[str, str, str]:
        return job.tenant, job.subject_id, job.training_id

    async def run_job(self, job: jobs_pb2.TrainJob, flag: CancelFlag) -> None:
        self.started.append(job.training_id)
        while not flag.is_set():  # noqa: ASYNC110 - the flag is a threading.Event set by another task
            await asyncio.sleep(0.01)
        raise JobCancelled

    async def finish(
        self, job: jobs_pb2.TrainJob, status: common_pb2.JobStatus.ValueType, reason: str
    ) -> None:
        self.finished[job.training_id] = (status, reason)


@pytest.fixture
async def queue(infra: Infra) -> AsyncIterator[tuple[Platform, str, JobRecords[trainer_pb2.Training]]]:
    env = {key.removeprefix("LIKENESS_").lower(): value for key, value in infra.endpoints.as_env().items()}
    platform = await Platform.connect(CommonSettings.model_validate(env), "trainer-queue-test")
    stream = f"TESTQUEUE{uuid.uuid4().hex[:8].upper()}"
    await platform.bus.js.add_stream(
        StreamConfig(name=stream, subjects=[f"{stream.lower()}.>"], retention=RetentionPolicy.WORK_QUEUE)
    )
    bucket = f"{stream.lower()}-records"
    records = JobRecords(await provisioned_kv(platform.bus, bucket), trainer_pb2.Training)
    yield platform, stream, records
    await platform.bus.js.delete_stream(stream)
    await platform.bus.js.delete_key_value(bucket)
    await platform.close()


@contextlib.asynccontextmanager
async def _running(worker: HangingWorker) -> AsyncIterator[asyncio.Task[None]]:
    # Tenant "t"'s consumer, made (or updated) as the serve role would, with this worker's settings.
    await private_tenant_queues(worker.platform.bus.js, worker.stream, worker, ["t"])
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield task
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, timeout=10)


async def _submit(platform: Platform, stream: str, records: JobRecords[trainer_pb2.Training]) -> str:
    training_id = ids.new_id("trn")
    await records.create(
        trainer_pb2.Training(
            id=training_id,
            tenant="t",
            subject_id="sub_x",
            status=JS.JOB_STATUS_QUEUED,
            created_at=now_timestamp(),
        )
    )
    job = jobs_pb2.TrainJob(training_id=training_id, tenant="t", subject_id="sub_x")
    await platform.bus.publish(f"{stream.lower()}.t.sub_x", job, msg_id=training_id)
    return training_id


async def _until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_a_job_whose_attempts_all_died_is_failed_with_a_reason(
    queue: tuple[Platform, str, JobRecords[trainer_pb2.Training]],
) -> None:
    platform, stream, records = queue
    killed = HangingWorker(platform, records, stream, ack_wait=1.0)
    async with _running(killed) as task:
        training_id = await _submit(platform, stream, records)
        await _until(lambda: training_id in killed.started)
        task.cancel()  # the process dies mid-job: no ack, no nak, no finish
    assert killed.finished == {}

    survivor = HangingWorker(platform, records, stream, ack_wait=1.0)
    async with _running(survivor):
        await _until(lambda: training_id in survivor.finished)
    assert survivor.started == [], "its one attempt is spent: the extra delivery only records the end"
    status, reason = survivor.finished[training_id]
    assert status == JS.JOB_STATUS_FAILED
    assert reason == "failed after 1 attempts (the worker stopped responding)"
    consumer = await platform.bus.js.consumer_info(stream, survivor.queues.consumer_name("t"))
    assert consumer.config.max_deliver == 2
    assert not consumer.num_ack_pending


async def test_changed_ack_wait_reaches_an_existing_consumer(
    queue: tuple[Platform, str, JobRecords[trainer_pb2.Training]],
) -> None:
    """The serve role makes a tenant's consumer with its settings; after a restart with another AckWait
    (and attempts), its next job's consumer has them: the settings are never stuck at the first ones."""
    platform, stream, _ = queue
    queues = TenantQueues("test", stream, prioritized=False, prefix=stream.lower())

    async def after_a_submit(ack_wait: float, attempts: int) -> tuple[float, int]:
        scheduler = QueueScheduler(platform.bus.js, queues, ack_wait=ack_wait, attempts=attempts)
        name = await scheduler.ensure("t")
        consumer = await platform.bus.js.consumer_info(stream, name)
        return float(consumer.config.ack_wait or 0), int(consumer.config.max_deliver or 0)

    assert await after_a_submit(30.0, 3) == (pytest.approx(30.0), 4), "3 attempts and the final delivery"
    assert await after_a_submit(4.0, 5) == (pytest.approx(4.0), 6), "a restarted serve role's settings apply"


async def test_a_cancelled_record_reaches_the_running_job_without_waiting_for_a_heartbeat(
    queue: tuple[Platform, str, JobRecords[trainer_pb2.Training]],
) -> None:
    platform, stream, records = queue
    worker = HangingWorker(platform, records, stream, ack_wait=600.0)  # heartbeats only every 200 s
    async with _running(worker):
        training_id = await _submit(platform, stream, records)
        await _until(lambda: training_id in worker.started)

        def cancel(training: trainer_pb2.Training) -> bool:
            training.status = JS.JOB_STATUS_CANCELLED
            return True

        await records.mutate("t", training_id, cancel)
        await _until(lambda: training_id in worker.finished, timeout=20.0)
    assert worker.finished[training_id] == (JS.JOB_STATUS_CANCELLED, CANCELLED_ON_REQUEST)


async def test_a_helper_task_that_swallows_a_cancellation_is_still_stopped() -> None:
    # What Python 3.11's asyncio.wait_for inside a NATS request can do to the heartbeat or the record
    # watch: the cancellation is lost and the loop goes on. The worker must not wait for it forever.
    swallowed: list[bool] = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await stop_task(task)
    assert swallowed
    assert task.cancelled()


async def test_a_helper_task_that_never_stops_does_not_hold_up_the_worker() -> None:
    released = asyncio.Event()

    async def immortal() -> None:
        while not released.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)

    task = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    await stop_task(task, timeout=0.3)  # returns (this test would hang otherwise) and leaves the task be
    assert not task.done()
    released.set()
    await task
