"""The trainer's `work` role: one job at a time from the `job.train` queue, on a resident base model.

Photos and weights are decrypted into memory only. Progress is published as events and kept in the
training record; the message gets `in_progress()` heartbeats well inside AckWait.

Surviving a lost worker: every K steps an encrypted checkpoint is stored (the newest N kept); a
redelivered job resumes from the newest one and, since the checkpoint holds the loop's whole state, ends
with the same LoRA. Exactly one LoRA and one `training.completed` per training: the LoRA is stored only if
no earlier delivery stored it, the record is marked succeeded before the event goes out, and a delivery of
an already succeeded job publishes the event only if the stream does not hold it yet. A job whose every
attempt died is failed by the extra delivery `reserve_final_delivery` keeps for that.

Nothing of a cancelled or erased job is written afterwards: the flag is checked right before each write
(and a destroyed key fails the data-key request), and since a write can still race an erasure that
started after its check, the worker confirms the subject's key is still alive after its last write and
otherwise removes what it wrote (objects with every version, and training events).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from dataclasses import replace

import PIL.Image
from nats.aio.msg import Msg

from likeness import ids
from likeness.audit import AuditTrail
from likeness.bus import decode
from likeness.consent import HEADSHOTS, ConsentReader, check_consent_at_start
from likeness.job_metrics import TRAIN, init_job_metrics, job_ended
from likeness.jobs import (
    CANCELLED_ON_REQUEST,
    SUBJECT_ERASED,
    TERMINAL,
    CancelFlag,
    JobCancelled,
    JobRecords,
    QueueWorker,
)
from likeness.object_names import photo_key
from likeness.provisioning import TRAIN_QUEUES, TRAINER_WORKER
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.v1 import common_pb2, jobs_pb2, trainer_pb2
from likeness.vault_transit import KeyDestroyed
from likeness_ml.base_model import detect_family, load_pipeline, native_resolution
from trainer.checkpoint_writer import CheckpointWriter
from trainer.checkpoints import CheckpointMismatch, TrainingState, parse_state
from trainer.class_prior import ClassPriors
from trainer.config import TrainerSettings
from trainer.lora_training import TrainResult, train_lora
from trainer.presets import TrainConfig, preset_for
from trainer.progress import ProgressPublisher
from trainer.report import build_report
from trainer.training_events import (
    publish_completed,
    publish_completed_once,
    publish_failed,
    purge_training_events,
)
from trainer.training_objects import TrainingObjects

log = logging.getLogger(__name__)
JS = common_pb2.JobStatus
_CLEANUP_ATTEMPTS = 3


class TrainingWorker(QueueWorker[jobs_pb2.TrainJob, trainer_pb2.Training]):
    job_type = jobs_pb2.TrainJob
    queues = TRAIN_QUEUES
    reserve_final_delivery = True

    def __init__(
        self, platform: Platform, records: JobRecords[trainer_pb2.Training], settings: TrainerSettings
    ) -> None:
        super().__init__(
            platform,
            records,
            settings.ack_wait_seconds,
            settings.max_deliver,
            settings.job_idle_poll_max_seconds,
        )
        self.consent = ConsentReader(platform.bus)
        secret = settings.audit_pseudonym_secret.get_secret_value()
        self.audit = AuditTrail(platform.bus, secret, TRAINER_WORKER)
        self.settings = settings
        self.pipe = load_pipeline(settings.base_model)  # once per worker, shared by every job
        self.family = detect_family(self.pipe)
        self.preset = preset_for(self.family)
        self.checkpoint_every = settings.checkpoint_every_steps or self.preset.checkpoint_every
        self.priors = ClassPriors()
        init_job_metrics(TRAIN)
        if settings.prior_preservation:  # generated now, so no job waits for them
            self.priors.get(
                self.pipe, self.config_for(jobs_pb2.TrainJob(), 1), self.preset.class_inference_steps
            )

    def identify(self, job: jobs_pb2.TrainJob) -> tuple[str, str, str]:
        return job.tenant, job.subject_id, job.training_id

    async def handle(self, msg: Msg) -> None:
        """A job runs only if its record (written by the serve role, under the caller's verified token)
        names the same tenant, subject and photos: one that disagrees is dropped before anything is read."""
        job = decode(msg, jobs_pb2.TrainJob)
        if not await self._agrees_with_its_record(job):
            log.warning(
                "a training job that disagrees with its record; dropped",
                extra={"training_id": job.training_id},
            )
            await msg.term()
            return
        await super().handle(msg)

    async def _agrees_with_its_record(self, job: jobs_pb2.TrainJob) -> bool:
        if not ids.is_valid_id(job.subject_id, "sub") or not all(
            ids.is_valid_id(p, "pho") for p in job.photo_ids
        ):
            return False
        found = await self.records.get(job.tenant, job.training_id)
        if found is None:
            return True  # skipped as erased by the queue worker
        record = found[0]
        return (record.tenant, record.id, record.subject_id, list(record.photo_ids)) == (
            job.tenant,
            job.training_id,
            job.subject_id,
            list(job.photo_ids),
        )

    def objects_of(self, job: jobs_pb2.TrainJob) -> TrainingObjects:
        platform = self.platform
        return TrainingObjects(platform.sealed, platform.store, job.tenant, job.subject_id, job.training_id)

    def config_for(self, job: jobs_pb2.TrainJob, photo_count: int) -> TrainConfig:
        config = replace(
            self.preset.config_for(photo_count),
            with_prior_preservation=self.settings.prior_preservation,
            train_text_encoder=self.settings.train_text_encoder,
        )
        return replace(config, steps=job.steps) if job.steps else config

    # --- a job ---------------------------------------------------------------------------------------

    async def run_job(self, job: jobs_pb2.TrainJob, flag: CancelFlag) -> None:
        # Before any photo is decrypted: the person's `headshots` grant must still be live.
        await check_consent_at_start(self.consent, job.tenant, job.subject_id, HEADSHOTS, flag)
        started = time.monotonic()
        objects = self.objects_of(job)
        if await asyncio.to_thread(objects.lora_stored):
            # An earlier delivery stored the LoRA (after recording its report) and died before the end.
            await self._complete(job, objects, flag)
            return
        images = await asyncio.to_thread(self._load_photos, job)
        # One record per attempt that decrypted the photos (a redelivery that decrypts them again is a
        # second access, recorded as such; one that finds the LoRA stored decrypts nothing and records
        # nothing); a publish repeated within the attempt is deduplicated.
        await self.audit.record(
            job.tenant,
            "photos.decrypted",
            job.subject_id,
            "ok",
            job.training_id,
            purpose=HEADSHOTS,
            once_key=f"{job.training_id}.{self.delivery}",
        )
        config = self.config_for(job, len(images))
        resume = await asyncio.to_thread(self._newest_checkpoint, objects)
        await self._mark_running(job, config, resume, flag)
        progress = ProgressPublisher(
            self.platform.bus,
            self.records,
            job,
            flag,
            asyncio.get_running_loop(),
            self.settings.progress_interval_seconds,
        )
        writer = CheckpointWriter(objects, flag, self.settings.checkpoints_kept)
        prepared = time.monotonic()
        try:
            result = await asyncio.to_thread(self._train, images, config, resume, progress, writer, flag)
        finally:
            await asyncio.to_thread(writer.close)  # no checkpoint upload may outlive the job
            await progress.flush()
        del images
        if result.cancelled or flag.is_set():
            raise JobCancelled
        report = build_report(
            config,
            result,
            resolution=config.resolution or native_resolution(self.pipe),
            photo_count=len(job.photo_ids),
            seconds=time.monotonic() - started + (result.train_seconds_total - result.timings.train_s),
            prepare_seconds=prepared - started + result.timings.prepare_s,
            checkpoint_seconds=writer.seconds,
        )
        await self._record_report(job, report, flag)
        _check_not_cancelled(flag)  # right before the writes
        # The templates first: a stored LoRA means its templates are stored too (a redelivery that finds
        # the LoRA only completes the job).
        await asyncio.to_thread(objects.seal_templates_of, list(job.photo_ids))
        _check_not_cancelled(flag)
        await asyncio.to_thread(objects.put_lora, result.lora_safetensors)
        await self._complete(job, objects, flag)

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

    def _newest_checkpoint(self, objects: TrainingObjects) -> TrainingState | None:
        for step in objects.checkpoint_steps():
            try:
                return parse_state(objects.read_checkpoint(step))
            except KeyDestroyed:
                raise
            except Exception as exc:  # unreadable (tampered, older format): an older one may still do
                log.warning("skipping a checkpoint", extra={"step": step, "error": type(exc).__name__})
        return None

    def _train(
        self,
        images: list[PIL.Image.Image],
        config: TrainConfig,
        resume: TrainingState | None,
        progress: ProgressPublisher,
        writer: CheckpointWriter,
        flag: CancelFlag,
    ) -> TrainResult:
        prior = None
        if config.with_prior_preservation:
            prior = self.priors.get(self.pipe, config, self.preset.class_inference_steps)

        def run(state: TrainingState | None) -> TrainResult:
            return train_lora(
                self.pipe,
                images,
                config,
                on_step=progress.on_step,
                should_stop=flag.is_set,
                resume=state,
                checkpoint_every=self.checkpoint_every,
                on_checkpoint=writer.submit,
                prior=prior,
            )

        if resume is not None:
            try:
                result = run(resume)
            except CheckpointMismatch:
                # Settings changed between deliveries. Its checkpoints go, or pruning by step would keep
                # them over the new run's own.
                log.warning("the checkpoint does not fit this run; starting over")
                writer.objects.delete_checkpoints()
            else:
                log.info("resumed from a checkpoint", extra={"step": resume.step})
                return result
        return run(None)

    async def _mark_running(
        self, job: jobs_pb2.TrainJob, config: TrainConfig, resume: TrainingState | None, flag: CancelFlag
    ) -> None:
        def mark_running(training: trainer_pb2.Training) -> bool:
            if training.status in TERMINAL:
                flag.set(CANCELLED_ON_REQUEST)
                raise JobCancelled
            training.status = JS.JOB_STATUS_RUNNING
            step = resume.step if resume is not None else 0
            training.progress.CopyFrom(common_pb2.Progress(step=step, total_steps=config.steps))
            return True

        if await self.records.mutate(job.tenant, job.training_id, mark_running) is None:
            flag.set(SUBJECT_ERASED)
            raise JobCancelled

    async def _record_report(
        self, job: jobs_pb2.TrainJob, report: trainer_pb2.TrainingReport, flag: CancelFlag
    ) -> None:
        """Kept with the record before the LoRA is stored, so a delivery that finds the LoRA has it too."""

        def attach(training: trainer_pb2.Training) -> bool:
            if training.status in TERMINAL:
                flag.set(CANCELLED_ON_REQUEST)
                raise JobCancelled
            training.report.CopyFrom(report)
            return True

        if await self.records.mutate(job.tenant, job.training_id, attach) is None:
            flag.set(SUBJECT_ERASED)
            raise JobCancelled

    async def _complete(self, job: jobs_pb2.TrainJob, objects: TrainingObjects, flag: CancelFlag) -> None:
        """The LoRA is stored: mark the record succeeded, announce it once, drop the checkpoints."""

        def succeed(training: trainer_pb2.Training) -> bool:
            if training.status == JS.JOB_STATUS_SUCCEEDED:
                return False
            if training.status in TERMINAL:  # cancelled while the LoRA was being stored
                flag.set(CANCELLED_ON_REQUEST)
                raise JobCancelled
            training.status = JS.JOB_STATUS_SUCCEEDED
            training.progress.step = training.progress.total_steps
            training.error = ""
            return True

        if await self.records.mutate(job.tenant, job.training_id, succeed) is None:
            flag.set(SUBJECT_ERASED)
            raise JobCancelled
        await publish_completed(self.platform.bus, job)
        job_ended(TRAIN, JS.JOB_STATUS_SUCCEEDED)
        await self._settle_success(job, objects)

    async def _settle_success(self, job: jobs_pb2.TrainJob, objects: TrainingObjects) -> None:
        if not await self._subject_key_alive(job):
            # The key was destroyed while (or after) we wrote: the erasure may have listed the objects and
            # purged the events before ours arrived, so ours are removed here.
            await self._erase_traces(job, objects)
            return
        await asyncio.to_thread(objects.delete_checkpoints)

    async def _subject_key_alive(self, job: jobs_pb2.TrainJob) -> bool:
        # A data-key request is the cheapest call the trainer's Vault policy allows on the subject's key.
        # Retention destroys the key before it deletes anything, so if the key is alive after our writes,
        # the erasure's own deletion (and event purge) comes after them and covers them.
        try:
            await asyncio.to_thread(self.platform.keys.data_key, job.subject_id)
        except KeyDestroyed:
            return False
        return True

    async def _erase_traces(self, job: jobs_pb2.TrainJob, objects: TrainingObjects) -> None:
        """After an erasure: every object this training wrote (all versions) and the training events."""
        for attempt in range(1, _CLEANUP_ATTEMPTS + 1):
            try:
                await asyncio.to_thread(objects.delete_all)
                await purge_training_events(self.platform.bus, job.tenant, job.subject_id)
            except Exception as exc:
                log.warning(
                    "cleanup after erasure failed", extra={"attempt": attempt, "error": type(exc).__name__}
                )
                await asyncio.sleep(attempt)
            else:
                return
        log.error("could not remove a training's objects after its subject was erased")

    # --- ends other than success ---------------------------------------------------------------------

    async def finish(
        self, job: jobs_pb2.TrainJob, status: common_pb2.JobStatus.ValueType, reason: str
    ) -> None:
        job_ended(TRAIN, status, delivery=self.delivery, max_deliver=self.max_deliver)
        objects = self.objects_of(job)
        if reason == SUBJECT_ERASED:
            await self._erase_traces(job, objects)  # and no record or event: the person is gone
            return
        await asyncio.to_thread(objects.delete_all)  # checkpoints, and a LoRA a late cancel caught

        def finish(training: trainer_pb2.Training) -> bool:
            if training.status in (JS.JOB_STATUS_SUCCEEDED, JS.JOB_STATUS_FAILED):
                return False
            training.status = status
            training.error = training.error or reason
            return True

        if await self.records.mutate(job.tenant, job.training_id, finish) is None:
            return  # the subject was erased: their records are gone and must stay gone
        await publish_failed(self.platform.bus, job, reason, cancelled=status == JS.JOB_STATUS_CANCELLED)

    async def on_finished_redelivery(self, job: jobs_pb2.TrainJob, record: trainer_pb2.Training) -> None:
        """The delivery that finished this job died before its ack: complete what it may have left."""
        objects = self.objects_of(job)
        if record.status == JS.JOB_STATUS_SUCCEEDED:
            await publish_completed_once(self.platform.bus, job)
            await self._settle_success(job, objects)
        else:
            await asyncio.to_thread(objects.delete_all)


def _check_not_cancelled(flag: CancelFlag) -> None:
    if flag.is_set():
        raise JobCancelled
