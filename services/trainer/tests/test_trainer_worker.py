"""The training worker in this process against the real NATS, S3 and Vault-API servers, on the tiny model.

Each test gets a private work-queue stream and records bucket (a work-queue stream admits one consumer per
subject, and a dev stack may be running), a fresh subject with its own Vault key and sealed photos.
Failures are provoked by wrapping real methods (the wrapped call still happens): a worker that loses its
job after a checkpoint, an erasure that lands while the LoRA is being stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.js.errors
import numpy as np
import PIL.Image
import pytest
from diffusers import StableDiffusionPipeline
from google.protobuf.message import Message
from nats.js.api import RetentionPolicy, StreamConfig

import trainer.worker
from likeness import ids
from likeness.bus import EVENTS_STREAM, event_nats_subject
from likeness.consent import BY_SUBJECT, HEADSHOTS, consent_key
from likeness.jobs import TERMINAL, CancelFlag, JobRecords
from likeness.object_names import face_template_key, photo_key, subject_prefix
from likeness.provisioning import CONSENTS_BUCKET
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, events_pb2, jobs_pb2, retention_pb2, trainer_pb2
from likeness_dev.infra import Infra
from likeness_dev.testing import grant_for_test, private_tenant_queues, provisioned_kv
from likeness_ml.face_templates import unpack_template_set
from likeness_ml.lora_format import read_lora_metadata
from trainer.config import TrainerSettings
from trainer.lora_training import StepReport, train_lora
from trainer.progress import ProgressPublisher
from trainer.training_objects import TrainingObjects
from trainer.worker import TrainingWorker

JS = common_pb2.JobStatus
TENANT = "acme"
WriteWatch = Callable[[], AbstractContextManager[list[tuple[str, Any]]]]
EVENT_TYPES: dict[str, type[Message]] = {
    "progress": events_pb2.TrainingProgress,
    "completed": events_pb2.TrainingCompleted,
    "failed": events_pb2.TrainingFailed,
}


def _png(image: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Harness:
    platform: Platform
    worker: TrainingWorker
    stream: str
    subject_id: str
    photo_ids: list[str]
    photo_pngs: list[bytes]

    @property
    def records(self) -> JobRecords[trainer_pb2.Training]:
        return self.worker.records

    def objects(self, training_id: str) -> TrainingObjects:
        return TrainingObjects(
            self.platform.sealed, self.platform.store, TENANT, self.subject_id, training_id
        )

    def job(self, training_id: str, steps: int) -> jobs_pb2.TrainJob:
        return jobs_pb2.TrainJob(
            training_id=training_id,
            tenant=TENANT,
            subject_id=self.subject_id,
            photo_ids=self.photo_ids,
            steps=steps,
        )

    async def submit(self, steps: int) -> str:
        """What TrainerService.SubmitTraining does, onto the private queue."""
        training = trainer_pb2.Training(
            id=ids.new_id("trn"),
            tenant=TENANT,
            subject_id=self.subject_id,
            status=JS.JOB_STATUS_QUEUED,
            photo_ids=self.photo_ids,
            created_at=now_timestamp(),
            progress=common_pb2.Progress(step=0, total_steps=steps),
        )
        await self.records.create(training)
        job = self.job(training.id, steps)
        await self.platform.bus.publish(
            f"{self.stream.lower()}.{TENANT}.{self.subject_id}", job, msg_id=training.id
        )
        return training.id

    async def record(self, training_id: str) -> trainer_pb2.Training | None:
        found = await self.records.get(TENANT, training_id)
        return found[0] if found else None

    async def settled(self, training_id: str, timeout: float = 120.0) -> trainer_pb2.Training:
        """The record once terminal and its message acknowledged (the worker is done with it)."""
        js = self.platform.bus.js
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            record = await self.record(training_id)
            consumer = await js.consumer_info(self.stream, self.worker.queues.consumer_name(TENANT))
            idle = not consumer.num_ack_pending and not consumer.num_pending
            if record is not None and record.status in TERMINAL and idle:
                return record
            assert asyncio.get_running_loop().time() < deadline, f"not settled: {record}"
            await asyncio.sleep(0.1)

    async def events(self) -> list[tuple[str, Any]]:
        """This subject's training events in the stream, in order: (kind, decoded event)."""
        found: list[tuple[str, Any]] = []
        sequence = 1
        while True:
            try:
                message = await self.platform.bus.js.get_msg(
                    EVENTS_STREAM,
                    seq=sequence,
                    subject=event_nats_subject(TENANT, self.subject_id, "training.>"),
                    next=True,
                )
            except nats.js.errors.NotFoundError:
                return found
            kind = str(message.subject).rsplit(".", 1)[1]
            event = EVENT_TYPES[kind]()
            event.ParseFromString(message.data or b"")
            found.append((kind, event))
            sequence = int(message.seq or sequence) + 1


@pytest.fixture
async def harness(
    infra: Infra, tiny_model_dir: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    env = {key.removeprefix("LIKENESS_").lower(): value for key, value in infra.endpoints.as_env().items()}
    settings = TrainerSettings.model_validate(
        env
        | {
            "base_model": str(tiny_model_dir),
            "ack_wait_seconds": 3.0,
            "max_deliver": 3,
            "checkpoint_every_steps": 2,
            "checkpoints_kept": 2,
            "progress_interval_seconds": 0.0,
        }
        | getattr(request, "param", {})
    )
    platform = await Platform.connect(settings, "trainer-worker-test")
    stream = f"TESTTRAIN{uuid.uuid4().hex[:8].upper()}"
    await platform.bus.js.add_stream(
        StreamConfig(name=stream, subjects=[f"{stream.lower()}.>"], retention=RetentionPolicy.WORK_QUEUE)
    )
    bucket = f"{stream.lower()}-trainings"
    records = JobRecords(await provisioned_kv(platform.bus, bucket), trainer_pb2.Training)
    worker = await asyncio.to_thread(TrainingWorker, platform, records, settings)
    await private_tenant_queues(platform.bus.js, stream, worker, [TENANT])

    subject_id = ids.new_id("sub")
    await asyncio.to_thread(platform.keys.create, subject_id)
    await grant_for_test(platform.bus, TENANT, subject_id)  # the worker checks it when a job starts
    from_photos = [_png(image) for image in _photos()]
    photo_ids = [ids.new_id("pho") for _ in from_photos]
    for photo_id, data in zip(photo_ids, from_photos, strict=True):
        ref = ObjectRef(TENANT, subject_id, photo_key(TENANT, subject_id, photo_id), "photo")
        await asyncio.to_thread(platform.sealed.put, ref, data)

    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    yield Harness(platform, worker, stream, subject_id, photo_ids, from_photos)
    stop.set()
    task.cancel()  # every job is settled by now; no need to wait out the queue's fetch timeout
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(task, timeout=15)
    await asyncio.to_thread(platform.store.delete_all_versions, subject_prefix(TENANT, subject_id))
    await asyncio.to_thread(platform.keys.destroy, subject_id)
    await platform.bus.js.purge_stream(EVENTS_STREAM, subject=event_nats_subject(TENANT, subject_id, ">"))
    await platform.bus.js.delete_stream(stream)
    await platform.bus.js.delete_key_value(bucket)
    await platform.close()


def _photos() -> list[PIL.Image.Image]:
    # Three distinct synthetic faces (the shared `photos` fixture is module-scoped; this one is per test).
    images = []
    for index in range(3):
        image = PIL.Image.new("RGB", (64, 80), (40 + 60 * index, 160 - 30 * index, 200))
        face = PIL.Image.new("RGB", (32, 44), (224, 172, 140))
        image.paste(face, (16 + 3 * index, 16))
        images.append(image)
    return images


async def _until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


class _Spy:
    """Records what a real method was called with, then calls it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
        self.calls: list[tuple[Any, ...]] = []
        real = getattr(owner, name)

        def spy(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(args)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)


async def test_a_whole_job_stores_only_sealed_objects_and_nothing_on_disk(
    harness: Harness, no_disk_writes: WriteWatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoints = _Spy(monkeypatch, TrainingObjects, "put_checkpoint")
    with no_disk_writes():
        training_id = await harness.submit(steps=5)
        training = await harness.settled(training_id)

    assert training.status == JS.JOB_STATUS_SUCCEEDED, training.error
    assert training.progress.step == training.progress.total_steps == 5
    assert [call[1] for call in checkpoints.calls] == [2, 4], (
        "a checkpoint every 2 steps, none after the last"
    )
    report = training.report
    assert len(report.losses) == 5
    assert (report.rank, report.alpha, report.resolution, report.photo_count) == (4, 4.0, 64, 3)
    assert report.learning_rate == pytest.approx(1e-3)
    assert report.seconds > 0
    fields = report.DESCRIPTOR.fields_by_name
    if "checkpoints" in fields:  # the report fields proposed in the trainer's proto change
        assert (report.steps, report.batch_size, report.resumed_from_step, report.checkpoints) == (5, 2, 0, 2)

    objects = harness.objects(training_id)
    store = harness.platform.store
    assert [version.key for version in store.list_versions(objects.prefix)] == [objects.lora_ref.key], (
        "one LoRA (one version); every checkpoint was deleted with all its versions"
    )
    lora = await asyncio.to_thread(harness.platform.sealed.get, objects.lora_ref)
    assert read_lora_metadata(lora).rank == 4
    assert b"ohwx" not in store.get_bytes(objects.lora_ref.key), "stored sealed, metadata included"

    events = await harness.events()
    assert [event.step for kind, event in events if kind == "progress"] == [1, 2, 3, 4, 5]
    assert [kind for kind, _ in events].count("completed") == 1
    assert events[-1][0] == "completed"


async def test_a_lost_job_resumes_from_its_checkpoint_and_ends_with_the_same_lora(
    harness: Harness, pipe: StableDiffusionPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    resumed_from: list[int] = []
    real_train = trainer.worker.train_lora

    def spy_train(*args: Any, **kwargs: Any) -> Any:
        resumed_from.append(kwargs["resume"].step if kwargs.get("resume") else 0)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(trainer.worker, "train_lora", spy_train)
    real_on_step = ProgressPublisher.on_step
    lost: list[int] = []

    def lose_the_first_attempt_at_step_5(self: ProgressPublisher, report: StepReport) -> None:
        if report.step == 5 and not lost:
            lost.append(report.step)
            raise RuntimeError("worker lost")  # after the checkpoint of step 4 was handed over
        real_on_step(self, report)

    monkeypatch.setattr(ProgressPublisher, "on_step", lose_the_first_attempt_at_step_5)

    training_id = await harness.submit(steps=7)
    training = await harness.settled(training_id)

    assert training.status == JS.JOB_STATUS_SUCCEEDED, training.error
    assert resumed_from == [0, 4], "the second delivery continued from the newest checkpoint"
    images = [PIL.Image.open(io.BytesIO(data)).convert("RGB") for data in harness.photo_pngs]
    uninterrupted = train_lora(
        pipe, images, harness.worker.config_for(harness.job(training_id, 7), len(images))
    )
    objects = harness.objects(training_id)
    lora = await asyncio.to_thread(harness.platform.sealed.get, objects.lora_ref)
    assert lora == uninterrupted.lora_safetensors, "resuming changed nothing about the result"
    assert list(training.report.losses) == pytest.approx(uninterrupted.losses)
    assert len(harness.platform.store.list_versions(objects.prefix)) == 1, "one LoRA, no checkpoint left"
    events = await harness.events()
    assert [kind for kind, _ in events].count("completed") == 1
    steps = [event.step for kind, event in events if kind == "progress"]
    assert steps == [1, 2, 3, 4, 5, 6, 7], "the resumed attempt reported from step 5 on"


async def test_cancel_stops_the_job_within_one_step_and_removes_its_checkpoints(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps_done = _Spy(monkeypatch, ProgressPublisher, "on_step")
    flagged_after: list[int] = []
    real_set = CancelFlag.set

    def spy_set(self: CancelFlag, reason: str) -> None:
        flagged_after.append(len(steps_done.calls))
        real_set(self, reason)

    monkeypatch.setattr(CancelFlag, "set", spy_set)
    training_id = await harness.submit(steps=500)
    await _until(lambda: len(steps_done.calls) >= 3)

    def cancel(training: trainer_pb2.Training) -> bool:  # what TrainerService.CancelTraining writes
        training.status = JS.JOB_STATUS_CANCELLED
        training.error = "cancelled on request"
        return True

    await harness.records.mutate(TENANT, training_id, cancel)
    training = await harness.settled(training_id)

    assert training.status == JS.JOB_STATUS_CANCELLED
    assert training.error == "cancelled on request"
    assert flagged_after, "the worker noticed the cancellation"
    assert len(steps_done.calls) - flagged_after[0] <= 1, "at most the step in progress finished"
    assert harness.platform.store.list_versions(harness.objects(training_id).prefix) == []
    failed = [event for kind, event in await harness.events() if kind == "failed"]
    assert [(event.cancelled, event.reason) for event in failed] == [(True, "cancelled on request")]


async def test_a_lora_that_races_an_erasure_is_removed_with_the_training_events(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_put = TrainingObjects.put_lora
    keys = harness.platform.keys

    def put_while_the_key_is_destroyed(self: TrainingObjects, data: bytes) -> None:
        # The data key was fetched before the erasure destroyed the key, the upload lands after the
        # erasure deleted the subject's objects and purged their events.
        real_put(self, data)
        keys.destroy(self.subject_id)

    monkeypatch.setattr(TrainingObjects, "put_lora", put_while_the_key_is_destroyed)
    training_id = await harness.submit(steps=3)
    await harness.settled(training_id)

    store = harness.platform.store
    models = harness.objects(training_id).prefix
    assert store.list_versions(models) == [], "the worker removed what it wrote after the erasure"
    assert await harness.events() == [], "and the training events that came after the erasure's purge"


@pytest.mark.parametrize("harness", [{"prior_preservation": True}], indirect=True)
async def test_prior_preservation_uses_class_images_made_once_when_the_worker_starts(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    made_at_start = harness.worker.priors.generated
    assert made_at_start == 4, "the tiny preset's class images, generated before any job"
    priors_used: list[Any] = []
    real_train = trainer.worker.train_lora

    def spy_train(*args: Any, **kwargs: Any) -> Any:
        priors_used.append(kwargs.get("prior"))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(trainer.worker, "train_lora", spy_train)
    training_id = await harness.submit(steps=3)
    training = await harness.settled(training_id)
    assert training.status == JS.JOB_STATUS_SUCCEEDED, training.error
    assert harness.worker.priors.generated == made_at_start, "no job generates them again"
    assert len(priors_used) == 1
    assert priors_used[0] is not None, "trained with the class prior"
    assert len(training.report.losses) == 3


async def test_checkpoints_keep_the_newest_and_go_with_all_their_versions(harness: Harness) -> None:
    objects = harness.objects(ids.new_id("trn"))
    for step in (2, 4, 6, 6, 8):  # 6 twice: two versions of one checkpoint
        await asyncio.to_thread(objects.put_checkpoint, step, f"state {step}".encode())
    assert await asyncio.to_thread(objects.checkpoint_steps) == [8, 6, 4, 2]
    await asyncio.to_thread(objects.prune_checkpoints, 2)
    assert await asyncio.to_thread(objects.checkpoint_steps) == [8, 6]
    versions = harness.platform.store.list_versions(objects.checkpoint_prefix)
    assert sorted(version.key.rsplit("-", 1)[1] for version in versions) == [
        "00000006",
        "00000006",
        "00000008",
    ]
    assert await asyncio.to_thread(objects.read_checkpoint, 8) == b"state 8"
    await asyncio.to_thread(objects.delete_checkpoints)
    assert harness.platform.store.list_versions(objects.prefix) == []


async def grant_headshots(platform: Platform, tenant: str, subject_id: str) -> None:
    """What retention writes when the person grants `headshots` (the worker checks it at job start)."""
    record = retention_pb2.SubjectConsents(
        tenant=tenant,
        subject_id=subject_id,
        grants=[
            retention_pb2.ConsentGrant(
                id=ids.new_id("cns"),
                purpose=HEADSHOTS,
                granted_at=now_timestamp(),
                granted_by=BY_SUBJECT,
            )
        ],
    )
    kv = await platform.bus.kv(CONSENTS_BUCKET)
    await kv.put(consent_key(tenant, subject_id), record.SerializeToString())


async def test_the_photos_templates_are_sealed_beside_the_model_and_go_with_it(harness: Harness) -> None:
    """The renderer's identity reference outlives the photos: the trainer seals the templates of the photos
    it trains on beside the LoRA, under the person's key, and deleting the model deletes them."""
    rng = np.random.default_rng(7)
    embeddings = rng.normal(size=(2, 128)).astype(np.float32)
    # Two of the three photos have a template (ingest's layout, version 1); the third has none.
    for photo_id, embedding in zip(harness.photo_ids[:2], embeddings, strict=True):
        blob = b"LKFT" + bytes([1, 0, 0, 0]) + (42).to_bytes(8, "little") + embedding.astype("<f4").tobytes()
        ref = ObjectRef(
            TENANT, harness.subject_id, face_template_key(TENANT, harness.subject_id, photo_id), "face"
        )
        await asyncio.to_thread(harness.platform.sealed.put, ref, blob)

    await grant_headshots(harness.platform, TENANT, harness.subject_id)
    training_id = await harness.submit(steps=2)
    training = await harness.settled(training_id)
    assert training.status == JS.JOB_STATUS_SUCCEEDED, training.error

    objects = harness.objects(training_id)
    assert objects.faces_ref.key == f"{objects.prefix}faces"
    sealed = await asyncio.to_thread(objects.read_faces)
    assert np.array_equal(unpack_template_set(sealed), embeddings)
    assert embeddings.astype("<f4").tobytes()[:64] not in harness.platform.store.get_bytes(
        objects.faces_ref.key
    )

    # A redelivery that finds them sealed leaves them alone: one version.
    assert await asyncio.to_thread(objects.seal_templates_of, harness.photo_ids) == 0
    assert len(harness.platform.store.list_versions(objects.faces_ref.key)) == 1

    # The photos' own templates expire with the photos (retention); the model's stay.
    await asyncio.to_thread(
        harness.platform.store.delete_all_versions, face_template_key(TENANT, harness.subject_id, "")
    )
    assert np.array_equal(unpack_template_set(await asyncio.to_thread(objects.read_faces)), embeddings)
    await asyncio.to_thread(objects.delete_all)
    assert harness.platform.store.list_versions(objects.prefix) == [], "gone with the model"
