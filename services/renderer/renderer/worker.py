"""The renderer's `work` role: one resident base pipeline; per job, the subject's LoRA is decrypted into
memory, attached, used for every image of the job in batches per style, and detached again.

Outputs are marked as AI-generated, encrypted under the subject's key and recorded with their seeds.
"""

from __future__ import annotations

import asyncio
import logging

import PIL.Image

from likeness import ids
from likeness.bus import RENDER_STREAM, event_subject
from likeness.jobs import TERMINAL, CancelFlag, JobCancelled, JobRecords, PermanentJobFailure, QueueWorker
from likeness.objects import lora_key, render_image_key
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.store import ObjectMissing
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, events_pb2, jobs_pb2, renderer_pb2
from likeness_ml.base_model import load_pipeline
from likeness_ml.lora_format import read_lora_metadata
from likeness_ml.tiny_model import is_tiny_model
from renderer.config import RendererSettings
from renderer.generation import generate, subject_lora
from renderer.marking import encode_marked_png
from renderer.styles import Style

log = logging.getLogger(__name__)
JS = common_pb2.JobStatus
TINY_MODEL_STEPS = 6


class RenderWorker(QueueWorker[jobs_pb2.RenderJob, renderer_pb2.Render]):
    job_type = jobs_pb2.RenderJob
    stream = RENDER_STREAM
    durable = "renderer-workers"

    def __init__(
        self,
        platform: Platform,
        records: JobRecords[renderer_pb2.Render],
        styles: dict[str, Style],
        settings: RendererSettings,
    ) -> None:
        super().__init__(platform, records, settings.ack_wait_seconds, settings.max_deliver)
        self.styles = styles
        self.settings = settings
        self.pipe = load_pipeline(settings.base_model)
        # The tiny dev model draws noise whatever the sampler does: a few steps are enough there.
        tiny_default = TINY_MODEL_STEPS if is_tiny_model(settings.base_model) else None
        self.inference_steps = settings.inference_steps or tiny_default

    def identify(self, job: jobs_pb2.RenderJob) -> tuple[str, str, str]:
        return job.tenant, job.subject_id, job.render_id

    async def run_job(self, job: jobs_pb2.RenderJob, flag: CancelFlag) -> None:
        lora_ref = ObjectRef(
            job.tenant, job.subject_id, lora_key(job.tenant, job.subject_id, job.training_id), "lora"
        )
        try:
            lora = await asyncio.to_thread(self.platform.sealed.get, lora_ref)
        except ObjectMissing as missing:
            raise PermanentJobFailure("the training's model is not available") from missing
        await self._render(job, flag, lora)

    async def _render(self, job: jobs_pb2.RenderJob, flag: CancelFlag, lora: bytes) -> None:
        phrase = read_lora_metadata(lora).subject_phrase

        def mark_running(record: renderer_pb2.Render) -> bool:
            if record.status in TERMINAL:
                raise JobCancelled
            record.status = JS.JOB_STATUS_RUNNING
            return True

        if await self.records.mutate(job.tenant, job.render_id, mark_running) is None:
            raise JobCancelled
        done = 0
        # The LoRA is attached once for every style of the job and always detached afterwards, so the next
        # person's images carry nothing of this one.
        with subject_lora(self.pipe, lora):
            for style_index, style_id in enumerate(job.styles):
                if flag.is_set():
                    raise JobCancelled
                seeds = [job.seed + style_index * 1000 + i for i in range(job.images_per_style)]
                style = self.styles[style_id]
                images = await asyncio.to_thread(
                    generate, self.pipe, style, seeds, phrase, self.inference_steps
                )
                produced = [
                    await self._store_image(job, style_id, seed, image)
                    for seed, image in zip(seeds, images, strict=True)
                ]
                done += len(produced)
                await self._record_images(job, produced, done)
        del lora
        await self.finish(job, JS.JOB_STATUS_SUCCEEDED, "")
        event = events_pb2.RenderCompleted(
            tenant=job.tenant,
            subject_id=job.subject_id,
            render_id=job.render_id,
            image_count=done,
            at=now_timestamp(),
        )
        await self.platform.bus.publish(
            event_subject(job.tenant, job.subject_id, "render.completed"),
            event,
            msg_id=f"{job.render_id}.completed",
        )

    async def _store_image(
        self, job: jobs_pb2.RenderJob, style_id: str, seed: int, image: PIL.Image.Image
    ) -> renderer_pb2.RenderedImage:
        png = encode_marked_png(image)
        image_id = ids.new_id("img")
        key = render_image_key(job.tenant, job.subject_id, job.render_id, image_id)
        await asyncio.to_thread(
            self.platform.sealed.put, ObjectRef(job.tenant, job.subject_id, key, "render"), png
        )
        return renderer_pb2.RenderedImage(
            id=image_id, style=style_id, seed=seed, content_type="image/png", size_bytes=len(png)
        )

    async def _record_images(
        self, job: jobs_pb2.RenderJob, images: list[renderer_pb2.RenderedImage], done: int
    ) -> None:
        def add(record: renderer_pb2.Render) -> bool:
            known = {i.id for i in record.images}
            record.images.extend(i for i in images if i.id not in known)
            record.progress.step = done
            return True

        if await self.records.mutate(job.tenant, job.render_id, add) is None:
            raise JobCancelled

    async def finish(
        self, job: jobs_pb2.RenderJob, status: common_pb2.JobStatus.ValueType, reason: str
    ) -> None:
        def finish(record: renderer_pb2.Render) -> bool:
            if record.status in TERMINAL:
                return False
            record.status = status
            record.error = reason
            return True

        if (
            await self.records.mutate(job.tenant, job.render_id, finish) is None
            or status == JS.JOB_STATUS_SUCCEEDED
        ):
            return
        event = events_pb2.RenderFailed(
            tenant=job.tenant,
            subject_id=job.subject_id,
            render_id=job.render_id,
            reason=reason,
            cancelled=status == JS.JOB_STATUS_CANCELLED,
            at=now_timestamp(),
        )
        await self.platform.bus.publish(
            event_subject(job.tenant, job.subject_id, "render.failed"),
            event,
            msg_id=f"{job.render_id}.failed",
        )
