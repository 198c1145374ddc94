"""The renderer's `work` role: one resident base pipeline; per job, the subject's LoRA is decrypted into
memory, attached, used for every image of the job in batches per style, and detached again.

Outputs are marked as AI-generated, encrypted under the subject's key and recorded with their seeds.
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.msg import Msg

from likeness import ids
from likeness.bus import RENDER_STREAM, decode, event_subject, subject_erased_filter
from likeness.jobs import TERMINAL, CancelFlag, JobRecords, running_heartbeat
from likeness.keys import KeyDestroyed
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
from renderer.generation import render
from renderer.marking import encode_marked_png
from renderer.styles import Style

log = logging.getLogger(__name__)
JS = common_pb2.JobStatus
TINY_MODEL_STEPS = 6


class JobCancelled(Exception):
    pass


class RenderWorker:
    def __init__(
        self,
        platform: Platform,
        records: JobRecords[renderer_pb2.Render],
        styles: dict[str, Style],
        settings: RendererSettings,
    ) -> None:
        self.platform = platform
        self.records = records
        self.styles = styles
        self.settings = settings
        self.pipe = load_pipeline(settings.base_model)
        # The tiny dev model draws noise whatever the sampler does: a few steps are enough there.
        tiny_default = TINY_MODEL_STEPS if is_tiny_model(settings.base_model) else None
        self.inference_steps = settings.inference_steps or tiny_default
        self._current: tuple[str, str, CancelFlag] | None = None

    async def on_subject_erased(self, msg: Msg) -> None:
        event = decode(msg, events_pb2.SubjectErased)
        if self._current and self._current[:2] == (event.tenant, event.subject_id):
            self._current[2].set("subject erased")

    async def run(self, stop: asyncio.Event) -> None:
        queue = await self.platform.bus.work_queue(
            RENDER_STREAM,
            "renderer-workers",
            ack_wait=self.settings.ack_wait_seconds,
            max_deliver=self.settings.max_deliver,
        )
        await self.platform.bus.watch_events(subject_erased_filter(), self.on_subject_erased)
        async for msg in queue.messages(stop):
            await self.handle(msg)

    async def handle(self, msg: Msg) -> None:
        job = decode(msg, jobs_pb2.RenderJob)
        found = await self.records.get(job.tenant, job.render_id)
        if found is None or found[0].status in TERMINAL:
            await msg.ack()
            return
        flag = CancelFlag()
        self._current = (job.tenant, job.subject_id, flag)
        try:
            async with running_heartbeat(
                msg, self.settings.ack_wait_seconds / 3, lambda: self._check_erased(job, flag)
            ):
                await self._run_job(job, flag)
            await msg.ack()
        except (JobCancelled, KeyDestroyed):
            await self._finish(job, JS.JOB_STATUS_CANCELLED, flag.reason or "subject erased")
            await msg.term()
        except ObjectMissing:
            await self._finish(job, JS.JOB_STATUS_FAILED, "the training's model is not available")
            await msg.term()
        except Exception as exc:
            deliveries = msg.metadata.num_delivered or 1
            log.exception("render failed", extra={"render_id": job.render_id, "delivery": deliveries})
            if deliveries >= self.settings.max_deliver:
                await self._finish(
                    job,
                    JS.JOB_STATUS_FAILED,
                    f"render failed after {deliveries} attempts ({type(exc).__name__})",
                )
                await msg.term()
            else:
                await msg.nak(delay=2.0 * deliveries)
        finally:
            self._current = None

    async def _check_erased(self, job: jobs_pb2.RenderJob, flag: CancelFlag) -> None:
        if await self.records.get(job.tenant, job.render_id) is None:
            flag.set("subject erased")

    async def _run_job(self, job: jobs_pb2.RenderJob, flag: CancelFlag) -> None:
        lora_ref = ObjectRef(
            job.tenant, job.subject_id, lora_key(job.tenant, job.subject_id, job.training_id), "lora"
        )
        lora = await asyncio.to_thread(self.platform.sealed.get, lora_ref)
        phrase = read_lora_metadata(lora).subject_phrase

        def mark_running(record: renderer_pb2.Render) -> bool:
            if record.status in TERMINAL:
                raise JobCancelled
            record.status = JS.JOB_STATUS_RUNNING
            return True

        if await self.records.mutate(job.tenant, job.render_id, mark_running) is None:
            raise JobCancelled
        done = 0
        for style_index, style_id in enumerate(job.styles):
            if flag.is_set():
                raise JobCancelled
            style = self.styles[style_id]
            seeds = [job.seed + style_index * 1000 + i for i in range(job.images_per_style)]
            steps = self.inference_steps
            images = await asyncio.to_thread(render, self.pipe, lora, style, seeds, phrase, steps)
            produced = []
            for seed, image in zip(seeds, images, strict=True):
                png = encode_marked_png(image)
                image_id = ids.new_id("img")
                ref = ObjectRef(
                    job.tenant,
                    job.subject_id,
                    render_image_key(job.tenant, job.subject_id, job.render_id, image_id),
                    "render",
                )
                await asyncio.to_thread(self.platform.sealed.put, ref, png)
                produced.append(
                    renderer_pb2.RenderedImage(
                        id=image_id, style=style_id, seed=seed, content_type="image/png", size_bytes=len(png)
                    )
                )
            done += len(produced)
            await self._record_images(job, produced, done)
        del lora
        await self._finish(job, JS.JOB_STATUS_SUCCEEDED, "")
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

    async def _finish(
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
