"""The trainer's `work` role: one job at a time from the `job.train` queue, on a resident base model.

Photos and weights are decrypted into memory only. Progress is published as events and kept in the
training record; the message gets `in_progress()` heartbeats well inside AckWait. A redelivered job whose
record is terminal is acknowledged and skipped (exactly one LoRA per training).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import replace

import PIL.Image

from likeness.bus import TRAIN_STREAM, event_subject
from likeness.jobs import TERMINAL, CancelFlag, JobCancelled, JobRecords, QueueWorker
from likeness.objects import lora_key, photo_key
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, events_pb2, jobs_pb2, trainer_pb2
from likeness_ml.base_model import detect_family, load_pipeline
from trainer.config import TrainerSettings
from trainer.lora_training import StepReport, TrainResult, train_lora
from trainer.presets import preset_for

log = logging.getLogger(__name__)
JS = common_pb2.JobStatus


class TrainingWorker(QueueWorker[jobs_pb2.TrainJob, trainer_pb2.Training]):
    job_type = jobs_pb2.TrainJob
    stream = TRAIN_STREAM
    durable = "trainer-workers"

    def __init__(
        self, platform: Platform, records: JobRecords[trainer_pb2.Training], settings: TrainerSettings
    ) -> None:
        super().__init__(platform, records, settings.ack_wait_seconds, settings.max_deliver)
        self.settings = settings
        self.pipe = load_pipeline(settings.base_model)
        self.family = detect_family(self.pipe)
        self.preset = preset_for(self.family)

    def identify(self, job: jobs_pb2.TrainJob) -> tuple[str, str, str]:
        return job.tenant, job.subject_id, job.training_id

    async def run_job(self, job: jobs_pb2.TrainJob, flag: CancelFlag) -> None:
        started = time.monotonic()
        images = await asyncio.to_thread(self._load_photos, job)
        config = self.preset.config_for(len(images))
        if job.steps:
            config = replace(config, steps=job.steps)

        def mark_running(training: trainer_pb2.Training) -> bool:
            if training.status in TERMINAL:
                raise JobCancelled
            training.status = JS.JOB_STATUS_RUNNING
            training.progress.CopyFrom(common_pb2.Progress(step=0, total_steps=config.steps))
            return True

        if await self.records.mutate(job.tenant, job.training_id, mark_running) is None:
            raise JobCancelled
        loop = asyncio.get_running_loop()
        progress = _ProgressPublisher(self, job, loop, self.settings.progress_interval_seconds)
        result = await asyncio.to_thread(train_lora, self.pipe, images, config, progress.on_step, flag.is_set)
        del images
        await progress.flush()
        if result.cancelled or flag.is_set():
            raise JobCancelled
        ref = ObjectRef(
            job.tenant, job.subject_id, lora_key(job.tenant, job.subject_id, job.training_id), "lora"
        )
        await asyncio.to_thread(self.platform.sealed.put, ref, result.lora_safetensors)
        await self._finish_succeeded(job, result, time.monotonic() - started, config.resolution or 0)

    def _load_photos(self, job: jobs_pb2.TrainJob) -> list[PIL.Image.Image]:
        refs = [
            ObjectRef(job.tenant, job.subject_id, photo_key(job.tenant, job.subject_id, p), "photo")
            for p in job.photo_ids
        ]
        images = []
        for data in self.platform.sealed.get_many(refs):
            with PIL.Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                images.append(image.convert("RGB"))
        return images

    async def _finish_succeeded(
        self, job: jobs_pb2.TrainJob, result: TrainResult, seconds: float, resolution: int
    ) -> None:
        def succeed(training: trainer_pb2.Training) -> bool:
            if training.status in TERMINAL and training.status != JS.JOB_STATUS_RUNNING:
                return False
            training.status = JS.JOB_STATUS_SUCCEEDED
            training.progress.step = result.steps_done
            training.report.CopyFrom(
                trainer_pb2.TrainingReport(
                    losses=result.losses,
                    seconds=seconds,
                    rank=result.metadata.rank,
                    alpha=result.metadata.alpha,
                    resolution=resolution,
                    photo_count=len(job.photo_ids),
                )
            )
            return True

        await self.records.mutate(job.tenant, job.training_id, succeed)
        event = events_pb2.TrainingCompleted(
            tenant=job.tenant, subject_id=job.subject_id, training_id=job.training_id, at=now_timestamp()
        )
        await self.platform.bus.publish(
            event_subject(job.tenant, job.subject_id, "training.completed"),
            event,
            msg_id=f"{job.training_id}.completed",
        )

    async def finish(
        self, job: jobs_pb2.TrainJob, status: common_pb2.JobStatus.ValueType, reason: str
    ) -> None:
        def finish(training: trainer_pb2.Training) -> bool:
            if training.status in (JS.JOB_STATUS_SUCCEEDED, JS.JOB_STATUS_FAILED):
                return False
            training.status = status
            training.error = training.error or reason
            return True

        if await self.records.mutate(job.tenant, job.training_id, finish) is None:
            return  # the subject was erased: their records are gone and must stay gone
        event = events_pb2.TrainingFailed(
            tenant=job.tenant,
            subject_id=job.subject_id,
            training_id=job.training_id,
            reason=reason,
            cancelled=status == JS.JOB_STATUS_CANCELLED,
            at=now_timestamp(),
        )
        await self.platform.bus.publish(
            event_subject(job.tenant, job.subject_id, "training.failed"),
            event,
            msg_id=f"{job.training_id}.failed",
        )


class _ProgressPublisher:
    """Receives step reports on the training thread; records and publishes them on the loop, throttled."""

    def __init__(
        self, worker: TrainingWorker, job: jobs_pb2.TrainJob, loop: asyncio.AbstractEventLoop, interval: float
    ) -> None:
        self.worker = worker
        self.job = job
        self.loop = loop
        self.interval = interval
        self._last_sent = 0.0
        self._pending: list[asyncio.Future[None]] = []

    def on_step(self, report: StepReport) -> None:
        now = time.monotonic()
        if now - self._last_sent < self.interval and report.step < report.total_steps:
            return
        self._last_sent = now
        future = asyncio.run_coroutine_threadsafe(self._publish(report), self.loop)
        self._pending.append(asyncio.wrap_future(future, loop=self.loop))

    async def _publish(self, report: StepReport) -> None:
        job = self.job
        eta = report.elapsed_s / report.step * (report.total_steps - report.step) if report.step else 0.0

        def advance(training: trainer_pb2.Training) -> bool:
            if training.status != JS.JOB_STATUS_RUNNING:
                return False
            training.progress.step = report.step
            training.progress.total_steps = report.total_steps
            return True

        await self.worker.records.mutate(job.tenant, job.training_id, advance)
        event = events_pb2.TrainingProgress(
            tenant=job.tenant,
            subject_id=job.subject_id,
            training_id=job.training_id,
            step=report.step,
            total_steps=report.total_steps,
            loss=report.loss,
            eta_seconds=eta,
            at=now_timestamp(),
        )
        await self.worker.platform.bus.publish(
            event_subject(job.tenant, job.subject_id, "training.progress"), event
        )

    async def flush(self) -> None:
        await asyncio.gather(*self._pending, return_exceptions=True)
