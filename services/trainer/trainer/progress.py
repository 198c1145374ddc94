"""Progress of a running training: step reports from the training thread become record updates and
`training.progress` events on the event loop, throttled (every step would flood the bus on a fast GPU).

Once the job is cancelled or its subject erased, nothing more is published or recorded.
"""

from __future__ import annotations

import asyncio
import time

from likeness.bus import Bus, event_nats_subject
from likeness.jobs import CancelFlag, JobRecords
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, events_pb2, jobs_pb2, trainer_pb2
from trainer.lora_training import StepReport
from trainer.training_events import PROGRESS

JS = common_pb2.JobStatus


class ProgressPublisher:
    def __init__(
        self,
        bus: Bus,
        records: JobRecords[trainer_pb2.Training],
        job: jobs_pb2.TrainJob,
        flag: CancelFlag,
        loop: asyncio.AbstractEventLoop,
        interval: float,
    ) -> None:
        self.bus = bus
        self.records = records
        self.job = job
        self.flag = flag
        self.loop = loop
        self.interval = interval
        self._last_sent = 0.0
        self._pending: list[asyncio.Future[None]] = []

    def on_step(self, report: StepReport) -> None:
        """Called on the training thread after each step; the first report of a run always goes out."""
        now = time.monotonic()
        if now - self._last_sent < self.interval and report.step < report.total_steps:
            return
        self._last_sent = now
        future = asyncio.run_coroutine_threadsafe(self._publish(report), self.loop)
        self._pending.append(asyncio.wrap_future(future, loop=self.loop))

    async def _publish(self, report: StepReport) -> None:
        if self.flag.is_set():
            return
        job = self.job

        def advance(training: trainer_pb2.Training) -> bool:
            if training.status != JS.JOB_STATUS_RUNNING:
                return False
            training.progress.step = report.step
            training.progress.total_steps = report.total_steps
            return True

        if await self.records.mutate(job.tenant, job.training_id, advance) is None or self.flag.is_set():
            return
        event = events_pb2.TrainingProgress(
            tenant=job.tenant,
            subject_id=job.subject_id,
            training_id=job.training_id,
            step=report.step,
            total_steps=report.total_steps,
            loss=report.loss,
            eta_seconds=report.eta_s,
            at=now_timestamp(),
        )
        await self.bus.publish(event_nats_subject(job.tenant, job.subject_id, PROGRESS), event)

    async def flush(self) -> None:
        """Waits for every report handed over so far (after this, the publisher writes nothing more)."""
        await asyncio.gather(*self._pending, return_exceptions=True)
