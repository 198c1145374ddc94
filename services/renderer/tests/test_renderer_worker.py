"""The render worker end to end against the real NATS, S3 and Vault API, on the tiny model: jobs from a
(private) work queue, the LoRA decrypted and cached, images rendered, gated, marked, encrypted, recorded;
erasure purging the cache and cancelling the subject's running and queued renders."""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
import PIL.Image
import pytest
from diffusers import StableDiffusionPipeline
from nats.aio.msg import Msg
from nats.js.api import RetentionPolicy, StreamConfig

from likeness import ids
from likeness.bus import event_nats_subject
from likeness.envelope import MAGIC as ENVELOPE_MAGIC
from likeness.jobs import CancelFlag, JobRecords
from likeness.object_names import face_template_key, lora_key, render_image_key, subject_prefix
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, events_pb2, jobs_pb2, renderer_pb2
from likeness_dev.testing import grant_for_test, private_tenant_queues, provisioned_kv
from likeness_marks import watermark
from likeness_marks.iptc import is_marked
from likeness_ml.identity_adapter import FaceEmbeds
from renderer.config import RendererSettings
from renderer.identity import FloatArray
from renderer.quality import BatchResult, GatePolicy
from renderer.styles import load_styles
from renderer.worker import RenderWorker

JS = common_pb2.JobStatus
TENANT = "acme"
WATERMARK_KEY = "worker-test-watermark-key-0123456789"


class ObservedWorker(RenderWorker):
    """The real worker, plus a way for a test to hold a job between two styles."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.erasures_seen: list[str] = []
        self.hold_after_first_style: asyncio.Event | None = None
        self.reached_hold = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def on_subject_erased(self, msg: Msg) -> None:
        await super().on_subject_erased(msg)
        self.erasures_seen.append(events_pb2.SubjectErased.FromString(msg.data).subject_id)

    def render_batch(
        self,
        job: jobs_pb2.RenderJob,
        style_index: int,
        phrase: str,
        templates: FloatArray | None,
        flag: CancelFlag,
        identity: FaceEmbeds | None = None,
    ) -> BatchResult:
        result = super().render_batch(job, style_index, phrase, templates, flag, identity)
        hold, loop = self.hold_after_first_style, self._loop
        if hold is not None and style_index == 0 and loop is not None:
            loop.call_soon_threadsafe(self.reached_hold.set)
            asyncio.run_coroutine_threadsafe(hold.wait(), loop).result(timeout=60)
        return result

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        await super().run(stop)


@dataclass
class Harness:
    platform: Platform
    worker: ObservedWorker
    records: JobRecords[renderer_pb2.Render]
    subjects_prefix: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.worker.run(self.stop))

    async def halt(self) -> None:
        self.stop.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self.task, timeout=20)
        self.task = None

    async def new_subject(self, lora: bytes, templates: list[bytes] | None = None) -> tuple[str, str]:
        subject_id, training_id = ids.new_id("sub"), ids.new_id("trn")
        sealed = self.platform.sealed
        await asyncio.to_thread(self.platform.keys.create, subject_id)
        await grant_for_test(self.platform.bus, TENANT, subject_id)  # checked when a job starts
        ref = ObjectRef(TENANT, subject_id, lora_key(TENANT, subject_id, training_id), "lora")
        await asyncio.to_thread(sealed.put, ref, lora)
        for template in templates or []:
            photo_id = ids.new_id("pho")
            face = ObjectRef(TENANT, subject_id, face_template_key(TENANT, subject_id, photo_id), "face")
            await asyncio.to_thread(sealed.put, face, template)
        return subject_id, training_id

    async def submit(
        self, subject_id: str, training_id: str, styles: list[str], per_style: int, seed: int
    ) -> str:
        """What SubmitRender does, on this test's private queue."""
        render = renderer_pb2.Render(
            id=ids.new_id("ren"),
            tenant=TENANT,
            subject_id=subject_id,
            training_id=training_id,
            status=JS.JOB_STATUS_QUEUED,
            styles=styles,
            images_per_style=per_style,
            seed=seed,
            progress=common_pb2.Progress(step=0, total_steps=per_style * len(styles)),
            created_at=now_timestamp(),
            updated_at=now_timestamp(),
        )
        await self.records.create(render)
        job = jobs_pb2.RenderJob(
            render_id=render.id,
            tenant=TENANT,
            subject_id=subject_id,
            training_id=training_id,
            styles=styles,
            images_per_style=per_style,
            seed=seed,
        )
        await self.platform.bus.publish(
            f"{self.subjects_prefix}.{TENANT}.{subject_id}", job, msg_id=render.id
        )
        return render.id

    async def wait(
        self, render_id: str, done: Callable[[renderer_pb2.Render], bool] | None = None
    ) -> renderer_pb2.Render:
        finished = done or (lambda r: r.status not in (JS.JOB_STATUS_QUEUED, JS.JOB_STATUS_RUNNING))
        for _ in range(600):
            found = await self.records.get(TENANT, render_id)
            assert found is not None
            if finished(found[0]):
                return found[0]
            await asyncio.sleep(0.1)
        raise AssertionError(f"render {render_id} did not finish")

    async def image_bytes(self, render: renderer_pb2.Render) -> list[bytes]:
        refs = [
            ObjectRef(
                TENANT,
                render.subject_id,
                render_image_key(TENANT, render.subject_id, render.id, i.id),
                "render",
            )
            for i in render.images
        ]
        return await asyncio.to_thread(self.platform.sealed.get_many, refs)

    async def erase(self, subject_id: str) -> None:
        """What retention announces after destroying the key (the key itself is left alone here)."""
        event = events_pb2.SubjectErased(
            tenant=TENANT, subject_id=subject_id, erasure_id=ids.new_id("era"), at=now_timestamp()
        )
        await self.platform.bus.publish(event_nats_subject(TENANT, subject_id, "subject.erased"), event)
        for _ in range(200):
            if subject_id in self.worker.erasures_seen:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the worker never saw the erasure")


@pytest.fixture(scope="module")
async def harness(
    make_settings: Callable[..., RendererSettings], pipe: StableDiffusionPipeline
) -> AsyncIterator[Harness]:
    settings = make_settings(watermark_key=WATERMARK_KEY)
    platform = await Platform.connect(settings, "renderer-worker-test")
    name = f"TESTRENDER{uuid.uuid4().hex[:8].upper()}"
    await platform.bus.js.add_stream(
        StreamConfig(name=name, subjects=[f"{name.lower()}.>"], retention=RetentionPolicy.WORK_QUEUE)
    )
    records = JobRecords(await provisioned_kv(platform.bus, f"{name.lower()}-renders"), renderer_pb2.Render)
    worker = await asyncio.to_thread(ObservedWorker, platform, records, load_styles(), settings, pipe)
    await private_tenant_queues(platform.bus.js, name, worker, [TENANT])
    harness = Harness(platform, worker, records, name.lower())
    harness.start()
    yield harness
    await harness.halt()
    await platform.bus.js.delete_stream(name)
    await platform.close()


def _pixels(data: bytes) -> np.ndarray:
    with PIL.Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


async def test_same_seed_same_images_through_the_worker(harness: Harness, lora: bytes) -> None:
    subject_id, training_id = await harness.new_subject(lora)
    first = await harness.wait(await harness.submit(subject_id, training_id, ["linkedin", "resume"], 3, 77))
    again = await harness.wait(await harness.submit(subject_id, training_id, ["linkedin", "resume"], 3, 77))
    other = await harness.wait(await harness.submit(subject_id, training_id, ["linkedin"], 1, 78))
    for render in (first, again):
        assert render.status == JS.JOB_STATUS_SUCCEEDED, render.error
        assert render.error == ""
        assert [(i.style, i.seed) for i in render.images] == [
            ("linkedin", 77),
            ("linkedin", 78),
            ("linkedin", 79),
            ("resume", 1077),
            ("resume", 1078),
            ("resume", 1079),
        ]
        assert render.progress.step == 6
    first_images, again_images = await harness.image_bytes(first), await harness.image_bytes(again)
    for a, b in zip(first_images, again_images, strict=True):
        assert np.array_equal(_pixels(a), _pixels(b)), "same base, LoRA, style and seed: same image"
    # Seed 78 alone in a batch of one matches seed 78 in the batch of three, up to float rounding.
    (alone,) = await harness.image_bytes(other)
    assert np.abs(_pixels(alone).astype(int) - _pixels(first_images[1]).astype(int)).max() <= 2
    assert not np.array_equal(_pixels(first_images[0]), _pixels(first_images[1]))


async def test_outputs_are_marked_and_encrypted(harness: Harness, lora: bytes) -> None:
    subject_id, training_id = await harness.new_subject(lora)
    render = await harness.wait(await harness.submit(subject_id, training_id, ["creative"], 2, 5))
    for image, data in zip(render.images, await harness.image_bytes(render), strict=True):
        assert image.content_type == "image/png"
        assert image.size_bytes == len(data)
        assert is_marked(data)
        with PIL.Image.open(io.BytesIO(data)) as decoded:
            assert watermark.detect(decoded.convert("RGB"), WATERMARK_KEY).marked
        stored = harness.platform.store.get_bytes(render_image_key(TENANT, subject_id, render.id, image.id))
        assert stored.startswith(ENVELOPE_MAGIC), "sealed"  # not "no PNG signature": ciphertext may hold one
        assert data[100:164] not in stored


async def test_lora_is_decrypted_once_then_served_from_the_cache_until_erasure(
    harness: Harness, make_lora: Callable[[int], bytes]
) -> None:
    subject_id, training_id = await harness.new_subject(make_lora(3))
    await harness.wait(await harness.submit(subject_id, training_id, ["corporate"], 1, 1))
    assert harness.worker.cache.contains_subject(TENANT, subject_id)
    # With the stored LoRA gone, a second render can only succeed from the cache.
    harness.platform.store.delete_all_versions(f"{subject_prefix(TENANT, subject_id)}models/")
    cached = await harness.wait(await harness.submit(subject_id, training_id, ["corporate"], 1, 2))
    assert cached.status == JS.JOB_STATUS_SUCCEEDED, cached.error

    await harness.erase(subject_id)
    assert not harness.worker.cache.contains_subject(TENANT, subject_id)
    after = await harness.wait(await harness.submit(subject_id, training_id, ["corporate"], 1, 3))
    assert after.status == JS.JOB_STATUS_FAILED
    assert after.error == "the training's model is not available"


async def test_erasure_cancels_the_running_render(harness: Harness, lora: bytes) -> None:
    subject_id, training_id = await harness.new_subject(lora)
    harness.worker.hold_after_first_style = hold = asyncio.Event()
    harness.worker.reached_hold.clear()
    try:
        render_id = await harness.submit(subject_id, training_id, ["linkedin", "executive", "realtor"], 2, 9)
        await asyncio.wait_for(harness.worker.reached_hold.wait(), timeout=60)
        await harness.erase(subject_id)
    finally:
        harness.worker.hold_after_first_style = None
        hold.set()
    render = await harness.wait(render_id)
    assert render.status == JS.JOB_STATUS_CANCELLED
    assert render.error == "subject erased"
    assert len(render.images) < 6
    assert not harness.worker.cache.contains_subject(TENANT, subject_id)


async def test_queued_renders_of_an_erased_subject_are_skipped(harness: Harness, lora: bytes) -> None:
    subject_id, training_id = await harness.new_subject(lora)
    await harness.halt()
    try:
        queued = [await harness.submit(subject_id, training_id, ["resume"], 2, seed) for seed in (1, 2)]
        # The serve role purges the subject's records on `subject.erased`; the worker finds none.
        assert await harness.records.purge_subject(TENANT, subject_id) == 2
    finally:
        harness.start()
    info = await harness.platform.bus.js.stream_info(harness.worker.stream)
    for _ in range(200):
        info = await harness.platform.bus.js.stream_info(harness.worker.stream)
        if info.state.messages == 0:
            break
        await asyncio.sleep(0.1)
    assert info.state.messages == 0, "the queued jobs were acknowledged"
    for render_id in queued:
        assert await harness.records.get(TENANT, render_id) is None
    renders = harness.platform.store.list_current(f"{subject_prefix(TENANT, subject_id)}renders/")
    assert renders == [], "nothing was rendered for an erased subject"


async def test_enforced_gate_re_rolls_and_says_why_images_are_missing(harness: Harness, lora: bytes) -> None:
    """The tiny model draws no faces, so under `enforce` every image fails, is re-rolled, and is dropped:
    the job ends failed, with the reason on the record."""
    template = np.random.default_rng(0).normal(size=128).astype(np.float32).tobytes()
    subject_id, training_id = await harness.new_subject(lora, templates=[template, template])
    policy = harness.worker.policy
    harness.worker.policy = GatePolicy("enforce", max_rerolls=1, max_distance=0.6)
    try:
        render = await harness.wait(await harness.submit(subject_id, training_id, ["linkedin"], 2, 3))
    finally:
        harness.worker.policy = policy
    assert render.status == JS.JOB_STATUS_FAILED
    assert render.images == []
    assert render.error == (
        "2 of 2 images were dropped: they did not show exactly one face within distance 0.6 of the "
        "person after 1 re-rolls each"
    )

    scored = await harness.wait(await harness.submit(subject_id, training_id, ["linkedin"], 2, 3))
    assert scored.status == JS.JOB_STATUS_SUCCEEDED  # `score` (the tiny model's default) keeps them
    assert len(scored.images) == 2
