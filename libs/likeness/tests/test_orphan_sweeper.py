"""The orphan sweeper on a real NATS: it fails exactly the `queued` records, older than the grace period,
whose work-queue message is not in the stream, and counts each once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from nats.js.api import RetentionPolicy, StreamConfig

from likeness.bus import Bus, job_nats_subject
from likeness.config import CommonSettings
from likeness.job_metrics import Queue
from likeness.jobs import JobRecords
from likeness.orphan_sweeper import NEVER_QUEUED_REASON, OrphanSweeper
from likeness.provisioning import TenantQueues
from likeness.v1 import common_pb2, jobs_pb2, trainer_pb2
from likeness_dev.testing import provisioned_kv

JS = common_pb2.JobStatus
TENANT = "t1"
GRACE = 60.0


@pytest.fixture(params=[False, True], ids=["train-like", "render-like-with-priorities"])
async def sweeper(
    settings: CommonSettings, request: pytest.FixtureRequest
) -> AsyncIterator[OrphanSweeper[trainer_pb2.Training]]:
    bus = await Bus.connect(settings.nats_url, "orphan-sweeper-test")
    kind = f"orphans{uuid.uuid4().hex[:8]}"
    stream = kind.upper()
    await bus.js.add_stream(
        StreamConfig(name=stream, subjects=[f"job.{kind}.>"], retention=RetentionPolicy.WORK_QUEUE)
    )
    records = JobRecords(await provisioned_kv(bus, f"{kind}-records"), trainer_pb2.Training)
    # Render-like: job subjects carry a priority token, which the sweeper matches with a wildcard.
    queue = Queue(kind, TenantQueues(kind, stream, prioritized=request.param))
    yield OrphanSweeper(bus, records, queue, GRACE, interval=1.0)
    await bus.js.delete_stream(stream)
    await bus.close()


async def _record(
    sweeper: OrphanSweeper[trainer_pb2.Training],
    *,
    age: float,
    status: common_pb2.JobStatus.ValueType = JS.JOB_STATUS_QUEUED,
    published: bool = False,
) -> str:
    """A training record written `age` seconds ago; with `published`, its job message in the stream."""
    training_id = f"trn_{uuid.uuid4().hex}"
    subject_id = f"sub_{uuid.uuid4().hex}"
    created = Timestamp()
    created.FromDatetime(datetime.now(UTC) - timedelta(seconds=age))
    record = trainer_pb2.Training(
        id=training_id,
        tenant=TENANT,
        subject_id=subject_id,
        status=status,
        created_at=created,
    )
    await sweeper.records.create(record)
    if published:
        job = jobs_pb2.TrainJob(training_id=training_id, tenant=TENANT, subject_id=subject_id)
        priority = "bulk" if sweeper.queue.queues.prioritized else None
        nats_subject = job_nats_subject(sweeper.queue.label, TENANT, subject_id, priority)
        await sweeper.bus.publish(nats_subject, job, msg_id=training_id)
    return training_id


async def _status(sweeper: OrphanSweeper[trainer_pb2.Training], training_id: str) -> tuple[int, str]:
    found = await sweeper.records.get(TENANT, training_id)
    assert found is not None
    return found[0].status, found[0].error


async def test_only_an_old_queued_record_without_its_message_is_failed_and_counted_once(
    sweeper: OrphanSweeper[trainer_pb2.Training],
) -> None:
    orphan = await _record(sweeper, age=2 * GRACE)
    waiting = await _record(sweeper, age=2 * GRACE, published=True)
    fresh = await _record(sweeper, age=1.0)  # its publish may still be under way
    running = await _record(sweeper, age=2 * GRACE, status=JS.JOB_STATUS_RUNNING)

    assert await sweeper.sweep() == 1
    assert await _status(sweeper, orphan) == (JS.JOB_STATUS_FAILED, NEVER_QUEUED_REASON)
    assert await _status(sweeper, waiting) == (JS.JOB_STATUS_QUEUED, "")
    assert await _status(sweeper, fresh) == (JS.JOB_STATUS_QUEUED, "")
    assert await _status(sweeper, running) == (JS.JOB_STATUS_RUNNING, "")
    assert await sweeper.sweep() == 0, "an orphan is failed (and counted) once"


async def test_another_jobs_message_of_the_same_person_does_not_hide_an_orphan(
    sweeper: OrphanSweeper[trainer_pb2.Training],
) -> None:
    waiting = await _record(sweeper, age=2 * GRACE, published=True)
    found = await sweeper.records.get(TENANT, waiting)
    assert found is not None
    # A second job of the same person whose publish failed: its subject holds only the first job's message.
    created = Timestamp()
    created.FromDatetime(datetime.now(UTC) - timedelta(seconds=2 * GRACE))
    orphan = f"trn_{uuid.uuid4().hex}"
    await sweeper.records.create(
        trainer_pb2.Training(
            id=orphan,
            tenant=TENANT,
            subject_id=found[0].subject_id,
            status=JS.JOB_STATUS_QUEUED,
            created_at=created,
        )
    )

    assert await sweeper.sweep() == 1
    assert (await _status(sweeper, orphan))[0] == JS.JOB_STATUS_FAILED
    assert (await _status(sweeper, waiting))[0] == JS.JOB_STATUS_QUEUED


async def test_after_a_full_pass_a_pass_reads_only_the_records_written_since(
    settings: CommonSettings,
) -> None:
    """The cost of a pass follows the jobs submitted lately, not the bucket: 40 old finished records are
    read by the first (full) pass only; a later orphan is still found, by a pass that read it alone."""
    bus = await Bus.connect(settings.nats_url, "orphan-sweeper-incremental-test")
    kind = f"orphans{uuid.uuid4().hex[:8]}"
    stream = kind.upper()
    await bus.js.add_stream(
        StreamConfig(name=stream, subjects=[f"job.{kind}.>"], retention=RetentionPolicy.WORK_QUEUE)
    )
    try:
        records = JobRecords(await provisioned_kv(bus, f"{kind}-records"), trainer_pb2.Training)
        # A grace of a second: the later orphan's revision must be older than the cutoff to be looked at;
        # no slack for NATS's clock (the same machine's), so that the old records are behind the cutoff.
        queue = Queue(kind, TenantQueues(kind, stream, prioritized=False))
        sweeper = OrphanSweeper(bus, records, queue, 1.0, interval=1.0, clock_slack=0.0)
        for _ in range(40):
            await _record(sweeper, age=2 * GRACE, status=JS.JOB_STATUS_SUCCEEDED)
        await asyncio.sleep(1.5)  # setup: their revisions are now older than the first pass's cutoff
        assert await sweeper.sweep() == 0
        assert sweeper.last_examined == 40, "the first pass reads every record"

        orphan = await _record(sweeper, age=0.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while (await _status(sweeper, orphan))[0] != JS.JOB_STATUS_FAILED:
            assert loop.time() < deadline, "the orphan written after the full pass was never failed"
            await sweeper.sweep()
            assert sweeper.last_examined <= 1, "a later pass reads only what was written since"
            await asyncio.sleep(0.2)
        assert await _status(sweeper, orphan) == (JS.JOB_STATUS_FAILED, NEVER_QUEUED_REASON)
    finally:
        await bus.js.delete_stream(stream)
        await bus.close()
