"""Instant renders in the real worker against the real NATS, S3 and Vault API, on the tiny model and the tiny
identity adapter: the sealed photo is decrypted and embedded in memory, images come out gated and marked,
nothing of the photo is cached, the photo steers the images, a trained LoRA combines with it, and the job
needs its `instant` grant."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from nats.js.api import RetentionPolicy, StreamConfig

from likeness import ids
from likeness.consent import BY_SUBJECT, HEADSHOTS, INSTANT, consent_key
from likeness.jobs import CancelFlag, JobCancelled, JobRecords
from likeness.object_names import lora_key, photo_key, render_image_key
from likeness.provisioning import CONSENTS_BUCKET
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, jobs_pb2, renderer_pb2, retention_pb2
from likeness_dev.testing import provisioned_kv
from likeness_marks.iptc import is_marked
from likeness_ml.base_model import load_pipeline
from likeness_ml.tiny_identity_adapter import write_tiny_identity_adapter
from renderer.config import RendererSettings
from renderer.server import _purpose_of
from renderer.styles import load_styles
from renderer.worker import RenderWorker

JS = common_pb2.JobStatus
TENANT = "acme"


def _photo_png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Instant:
    platform: Platform
    worker: RenderWorker
    records: JobRecords[renderer_pb2.Render]

    async def subject(
        self, *purposes: str, photo_seed: int = 1, lora: bytes | None = None
    ) -> tuple[str, str, str]:
        subject_id, photo_id, training_id = ids.new_id("sub"), ids.new_id("pho"), ""
        await asyncio.to_thread(self.platform.keys.create, subject_id)
        await self.grant(subject_id, purposes)
        ref = ObjectRef(TENANT, subject_id, photo_key(TENANT, subject_id, photo_id), "photo")
        await asyncio.to_thread(self.platform.sealed.put, ref, _photo_png(photo_seed))
        if lora is not None:
            training_id = ids.new_id("trn")
            model = ObjectRef(TENANT, subject_id, lora_key(TENANT, subject_id, training_id), "lora")
            await asyncio.to_thread(self.platform.sealed.put, model, lora)
        return subject_id, photo_id, training_id

    async def grant(self, subject_id: str, purposes: tuple[str, ...]) -> None:
        """Live grants of purposes, in one record as retention keeps them (checked when a job starts)."""
        grants = [
            retention_pb2.ConsentGrant(
                id=ids.new_id("cns"),
                purpose=purpose,
                policy_version="test",
                granted_at=now_timestamp(),
                granted_by=BY_SUBJECT,
            )
            for purpose in purposes
        ]
        record = retention_pb2.SubjectConsents(tenant=TENANT, subject_id=subject_id, grants=grants)
        kv = await self.platform.bus.kv(CONSENTS_BUCKET)
        await kv.put(consent_key(TENANT, subject_id), record.SerializeToString())

    async def run(
        self, subject_id: str, photo_id: str, training_id: str = "", seed: int = 5
    ) -> renderer_pb2.Render:
        render = renderer_pb2.Render(
            id=ids.new_id("ren"),
            tenant=TENANT,
            subject_id=subject_id,
            training_id=training_id,
            status=JS.JOB_STATUS_QUEUED,
            styles=["linkedin"],
            images_per_style=2,
            seed=seed,
            created_at=now_timestamp(),
            updated_at=now_timestamp(),
            instant=True,
            photo_id=photo_id,
        )
        await self.records.create(render)
        job = jobs_pb2.RenderJob(
            render_id=render.id,
            tenant=TENANT,
            subject_id=subject_id,
            training_id=training_id,
            styles=render.styles,
            images_per_style=2,
            seed=seed,
            instant=True,
            photo_id=photo_id,
        )
        await self.worker.run_job(job, CancelFlag())
        found = await self.records.get(TENANT, render.id)
        assert found is not None
        return found[0]

    async def pixels(self, render: renderer_pb2.Render) -> list[np.ndarray]:
        refs = [
            ObjectRef(
                TENANT,
                render.subject_id,
                render_image_key(TENANT, render.subject_id, render.id, i.id),
                "render",
            )
            for i in render.images
        ]
        images = []
        for data in await asyncio.to_thread(self.platform.sealed.get_many, refs):
            assert is_marked(data)
            with PIL.Image.open(io.BytesIO(data)) as image:
                images.append(np.asarray(image.convert("RGB")).astype(int))
        return images


@pytest.fixture(scope="module")
async def instant(
    make_settings: Callable[..., RendererSettings], model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Instant]:
    adapter = write_tiny_identity_adapter(tmp_path_factory.mktemp("adapter"), model_dir)
    settings = make_settings(identity_adapter=adapter, watermark_key="instant-test-watermark-key-0123456789")
    platform = await Platform.connect(settings, "renderer-instant-test")
    name = f"TESTINSTANT{uuid.uuid4().hex[:8].upper()}"
    await platform.bus.js.add_stream(
        StreamConfig(name=name, subjects=[f"{name.lower()}.>"], retention=RetentionPolicy.WORK_QUEUE)
    )
    records = JobRecords(await provisioned_kv(platform.bus, f"{name.lower()}-renders"), renderer_pb2.Render)
    # A pipeline of its own: the adapter's image encoder is registered on the pipeline it loads into.
    pipe = await asyncio.to_thread(load_pipeline, model_dir)
    worker = await asyncio.to_thread(RenderWorker, platform, records, load_styles(), settings, pipe)
    yield Instant(platform, worker, records)
    await platform.bus.js.delete_stream(name)
    await platform.close()


async def test_one_photo_renders_and_nothing_of_it_is_cached(instant: Instant) -> None:
    subject_id, photo_id, _ = await instant.subject(INSTANT)
    render = await instant.run(subject_id, photo_id)
    assert render.status == JS.JOB_STATUS_SUCCEEDED, render.error
    assert len(render.images) == 2
    first = await instant.pixels(render)
    # The photo and its embedding lived in the job only: the worker's subject cache holds nothing of them.
    assert not instant.worker.cache.contains_subject(TENANT, subject_id)
    again = await instant.pixels(await instant.run(subject_id, photo_id))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True)), "same photo and seed"

    other_subject, other_photo, _ = await instant.subject(INSTANT, photo_seed=2)
    other = await instant.pixels(await instant.run(other_subject, other_photo))
    assert max(np.abs(a - b).max() for a, b in zip(first, other, strict=True)) > 0, "the photo steers"


async def test_a_trained_model_and_the_photo_combine(instant: Instant, lora: bytes) -> None:
    subject_id, photo_id, training_id = await instant.subject(INSTANT, lora=lora)
    # The model needs its `headshots` grant as well as `instant`.
    with pytest.raises(JobCancelled):
        await instant.run(subject_id, photo_id, training_id)
    await instant.grant(subject_id, (HEADSHOTS, INSTANT))
    combined = await instant.run(subject_id, photo_id, training_id)
    assert combined.status == JS.JOB_STATUS_SUCCEEDED, combined.error
    alone_subject, alone_photo, _ = await instant.subject(INSTANT)
    alone = await instant.pixels(await instant.run(alone_subject, alone_photo))
    assert max(np.abs(a - b).max() for a, b in zip(await instant.pixels(combined), alone, strict=True)) > 0


async def test_an_instant_render_needs_the_instant_grant(instant: Instant) -> None:
    subject_id, photo_id, _ = await instant.subject(HEADSHOTS)
    with pytest.raises(JobCancelled):
        await instant.run(subject_id, photo_id)


def test_a_withdrawal_of_instant_cancels_instant_renders() -> None:
    assert _purpose_of(renderer_pb2.Render(instant=True)) == INSTANT
    assert _purpose_of(renderer_pb2.Render(team_look_id="sales")) == "team_look"
    assert _purpose_of(renderer_pb2.Render()) == HEADSHOTS
