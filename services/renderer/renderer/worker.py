"""The renderer's `work` role: one resident base pipeline; per job, the subject's LoRA (decrypted into
memory, or taken from the worker's short-lived subject cache) is merged in, used for every image of the
job in one batch per style, and taken out again.

Each output is scored against the face templates sealed beside the model (the identity gate; they live as
long as the model, unlike the photos' own), classified for inappropriate content (the safety gate), marked
as AI-generated (watermark, IPTC, C2PA), encrypted under the subject's key and recorded with its seed, its
scores and why any image was dropped. While one style renders, the previous style's images are encrypted
and stored. `evt.subject.erased` cancels the subject's running job and drops everything of theirs from the
cache; their queued jobs find no record and are skipped (the serve role purges the records).

The worker acts under its own identity on its own queue's jobs only, and runs a job only when the job's
record (written by the serve role, under the caller's verified token) names the same tenant, subject and
training: a job message that disagrees with its record is dropped before anything is read or deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import numpy as np
import PIL.Image
from nats.aio.msg import Msg
from prometheus_client import Counter, Histogram

from likeness import ids
from likeness.audit import AuditTrail
from likeness.bus import decode, event_nats_subject
from likeness.consent import INSTANT, ConsentReader, check_consent_at_start, render_purposes
from likeness.job_metrics import RENDER, init_job_metrics, job_ended
from likeness.jobs import TERMINAL, CancelFlag, JobCancelled, JobRecords, PermanentJobFailure, QueueWorker
from likeness.object_names import lora_key, model_faces_key, render_image_key, subject_prefix
from likeness.provisioning import RENDER_QUEUES, RENDERER_WORKER
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.store import ObjectMissing
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, events_pb2, jobs_pb2, renderer_pb2
from likeness.vault_transit import KeyDestroyed
from likeness_ml.base_model import BasePipeline, detect_family, load_pipeline, shaped_like
from likeness_ml.face_templates import unpack_template_set
from likeness_ml.identity_adapter import FaceEmbeds, identity_attached
from likeness_ml.lora_format import read_lora_metadata
from likeness_ml.tiny_model import is_tiny_model
from renderer.catalog import Catalog, UnknownChoice, load_catalog
from renderer.config import RendererSettings
from renderer.generation import generate, subject_lora
from renderer.identity import EMBEDDING_SIZE, FaceScore, FaceScorer, FloatArray, parse_templates
from renderer.instant import INSTANT_PHRASE, InstantMode
from renderer.marking import OutputMarker
from renderer.prompt_budget import check_prompt_budget, tokenizer_counter
from renderer.provenance import Credentials, ManifestSigner, ProvenanceUnavailable
from renderer.quality import BatchResult, GatePolicy, JobQuality, Output, gated_batch
from renderer.safety import SafetyGate
from renderer.styles import Style
from renderer.subject_cache import CacheKey, SubjectCache

log = logging.getLogger(__name__)
JS = common_pb2.JobStatus
TINY_MODEL_STEPS = 6
FACES_ITEM = "faces"
#: Object kind of the templates the trainer seals beside a model (part of the envelope's context).
MODEL_FACES_KIND = "model-faces"

IMAGES = Counter("likeness_renderer_images_total", "Images delivered")
REROLLS = Counter("likeness_renderer_rerolls_total", "Images rendered again by the quality gate")
GATE_FAILURES = Counter(
    "likeness_renderer_gate_failures_total", "Images that did not pass the quality gate", ["mode"]
)
GATE_DROPS = Counter(
    "likeness_renderer_gate_drops_total", "Images dropped by an enforced gate, by reason", ["reason"]
)
IDENTITY = Histogram(
    "likeness_renderer_identity_distance",
    "dlib distance of delivered faces to their subject",
    buckets=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0),
)


def make_marker(settings: RendererSettings) -> OutputMarker:
    signer = None
    if settings.c2pa_sign:
        chain, key = settings.c2pa_cert_chain.get_secret_value(), settings.c2pa_private_key.get_secret_value()
        try:
            credentials = Credentials.from_pem(chain, key) if chain and key else Credentials.ephemeral()[0]
            signer = ManifestSigner(credentials)
        except ProvenanceUnavailable:
            if settings.is_production:
                raise
            log.warning("C2PA signing unavailable (c2pa-python missing); outputs carry watermark and IPTC")
    return OutputMarker(settings.watermark_key.get_secret_value(), signer)


def make_safety_gate(settings: RendererSettings) -> SafetyGate | None:
    """The pinned classifier, loaded once (refused if its files differ from their manifest)."""
    if settings.safety_gate_in_effect() == "off" or settings.safety_model is None:
        if settings.safety_gate != "off":
            log.warning("no safety classifier configured (LIKENESS_SAFETY_MODEL): the safety gate is off")
        return None
    return SafetyGate.load(settings.safety_model, settings.safety_flagged_labels, settings.safety_threshold)


def _names_its_material(job: jobs_pb2.RenderJob) -> bool:
    """A trained render names its training; an instant one its photo (and maybe a training too)."""
    if job.instant and not ids.is_valid_id(job.photo_id, "pho"):
        return False
    if job.instant and not job.training_id:
        return True
    return ids.is_valid_id(job.training_id, "trn") and not (job.photo_id and not job.instant)


class RenderWorker(QueueWorker[jobs_pb2.RenderJob, renderer_pb2.Render]):
    job_type = jobs_pb2.RenderJob
    queues = RENDER_QUEUES
    # A render whose worker dies on every attempt (OOM on a large batch) is failed with a reason by the
    # delivery kept for that, never left `running`.
    reserve_final_delivery = True

    def __init__(
        self,
        platform: Platform,
        records: JobRecords[renderer_pb2.Render],
        styles: dict[str, Style],
        settings: RendererSettings,
        pipe: BasePipeline | None = None,
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
        self.audit = AuditTrail(platform.bus, secret, RENDERER_WORKER)
        self.styles = styles
        self.catalog: Catalog = load_catalog()
        self.settings = settings
        self.pipe = pipe if pipe is not None else load_pipeline(settings.base_model)
        # Every style with the longest choices must fit the model's own text window: refuse to start if not.
        check_prompt_budget(styles, self.catalog, tokenizer_counter(self.pipe))
        # Styles are tuned per family; a tiny model renders with its lookalike's tuning.
        self.style_family = shaped_like(detect_family(self.pipe))
        tiny = is_tiny_model(settings.base_model)
        # The tiny dev model draws noise whatever the sampler does: a few steps are enough there.
        self.inference_steps = settings.inference_steps or (TINY_MODEL_STEPS if tiny else None)
        self.cache = SubjectCache(
            settings.subject_cache_entries, settings.subject_cache_bytes, settings.subject_cache_ttl_seconds
        )
        self.policy = GatePolicy(
            settings.gate_for(tiny),
            settings.quality_max_rerolls,
            settings.quality_max_distance,
            settings.safety_gate_in_effect(),
        )
        self.scorer = FaceScorer(settings.quality_min_face_score) if self.policy.mode != "off" else None
        self.safety = make_safety_gate(settings)
        self.marker = make_marker(settings)
        # Instant mode's identity adapter, beside the resident pipeline (verified at start like it).
        self.instant = (
            InstantMode(self.pipe, settings.identity_adapter, settings.identity_adapter_scale)
            if settings.identity_adapter is not None
            else None
        )
        init_job_metrics(RENDER)

    def identify(self, job: jobs_pb2.RenderJob) -> tuple[str, str, str]:
        return job.tenant, job.subject_id, job.render_id

    async def handle(self, msg: Msg) -> None:
        job = decode(msg, jobs_pb2.RenderJob)
        if not await self._agrees_with_its_record(job):
            log.warning(
                "a render job that disagrees with its record; dropped", extra={"render_id": job.render_id}
            )
            await msg.term()
            return
        await super().handle(msg)

    async def _agrees_with_its_record(self, job: jobs_pb2.RenderJob) -> bool:
        """Whether the job names what its record does (no record: the job is skipped as erased anyway)."""
        if not ids.is_valid_id(job.subject_id, "sub") or not _names_its_material(job):
            return False
        found = await self.records.get(job.tenant, job.render_id)
        if found is None:
            return True
        record = found[0]
        return (
            record.tenant,
            record.id,
            record.subject_id,
            record.training_id,
            record.instant,
            record.photo_id,
            (record.background, record.outfit, record.lighting),
        ) == (
            job.tenant,
            job.render_id,
            job.subject_id,
            job.training_id,
            job.instant,
            job.photo_id,
            (job.background, job.outfit, job.lighting),
        )

    async def run(self, stop: asyncio.Event) -> None:
        sweeper = asyncio.create_task(self._sweep_cache(stop))
        try:
            await super().run(stop)
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            self.cache.clear()

    async def _sweep_cache(self, stop: asyncio.Event) -> None:
        # Expired entries go even when nobody asks for them again.
        every = max(1.0, min(30.0, self.cache.ttl_seconds / 4))
        while not stop.is_set():
            await asyncio.sleep(every)
            self.cache.purge_expired()

    async def on_subject_erased(self, msg: Msg) -> None:
        event = decode(msg, events_pb2.SubjectErased)
        dropped = self.cache.purge_subject(event.tenant, event.subject_id)
        log.info("subject erased: cache purged", extra={"erasure_id": event.erasure_id, "entries": dropped})
        await super().on_subject_erased(msg)

    async def run_job(self, job: jobs_pb2.RenderJob, flag: CancelFlag) -> None:
        try:
            # Checked at submission too; a catalog changed since (a rollout dropped an id) fails it clearly.
            self.catalog.choose(job.background, job.outfit, job.lighting)
        except UnknownChoice as unknown:
            raise PermanentJobFailure(str(unknown)) from None
        # Before the LoRA or photo is decrypted: the grants of the render's purposes (from its record: a
        # team look's render needs `team_look`, an instant one `instant`) must still be live.
        found = await self.records.get(job.tenant, job.render_id)
        look = found[0].team_look_id if found else ""
        for purpose in render_purposes(look, instant=job.instant, trained=bool(job.training_id)):
            await check_consent_at_start(self.consent, job.tenant, job.subject_id, purpose, flag)
        await self._discard_earlier_attempt(job)
        try:
            purposes = render_purposes(look, instant=job.instant, trained=bool(job.training_id))
            # One record per decrypted material per attempt (the LoRA, from Vault or the worker's cache of
            # it; the instant photo), before a step runs; a publish repeated within the attempt is
            # deduplicated by its message id.
            lora = await self._lora(job) if job.training_id else None
            if lora is not None:
                await self.audit.record(
                    job.tenant,
                    "model.decrypted",
                    job.subject_id,
                    "ok",
                    job.render_id,
                    purpose=purposes[0],
                    once_key=f"{job.render_id}.{self.delivery}.model",
                )
            identity: FaceEmbeds | None = None
            templates: FloatArray | None = None
            if job.instant:
                if self.instant is None:
                    raise PermanentJobFailure("instant mode is not configured on this renderer")
                material = await asyncio.to_thread(self.instant.material, self.platform.sealed, job)
                await self.audit.record(
                    job.tenant,
                    "photo.decrypted",
                    job.subject_id,
                    "ok",
                    job.render_id,
                    purpose=INSTANT,
                    once_key=f"{job.render_id}.{self.delivery}.photo",
                )
                identity = material.embeds
                # Without a model the photo's own template is the identity reference.
                templates = material.templates if lora is None else None
            if self.scorer is not None and lora is not None:
                templates = await self._templates(job)
            await self._render(job, flag, lora, templates if self.scorer is not None else None, identity)
        except KeyDestroyed:
            # The key is gone: so must every copy of this person here, before the erasure event arrives.
            self.cache.purge_subject(job.tenant, job.subject_id)
            raise

    async def _discard_earlier_attempt(self, job: jobs_pb2.RenderJob) -> None:
        """A job delivered again after its worker died starts over from nothing: the images an earlier
        attempt stored (recorded or not: it may have died between the two) go, every version, and leave
        the record, so the job ends with one set of images rather than a partial set plus a full one.
        Renders are seeded, so the set that comes out is the one the first attempt would have made."""
        prefix = render_image_key(job.tenant, job.subject_id, job.render_id, "")  # ".../renders/<id>/"
        removed, _ = await asyncio.to_thread(self.platform.store.delete_all_versions, prefix)

        def forget(record: renderer_pb2.Render) -> bool:
            if not record.images and not removed:
                return False
            del record.images[:]
            record.progress.step = 0
            return True

        if await self.records.mutate(job.tenant, job.render_id, forget) is None:
            raise JobCancelled
        if removed:
            log.info("earlier attempt discarded", extra={"render_id": job.render_id, "objects": removed})

    async def on_finished_redelivery(self, job: jobs_pb2.RenderJob, record: renderer_pb2.Render) -> None:
        """The delivery that finished this render died before its ack, maybe before its event: announce
        the success unless the stream already holds it."""
        if record.status == JS.JOB_STATUS_SUCCEEDED:
            await self._publish_completed(job, len(record.images), once=True)

    # ------------------------------------------------------------------------------ subject material

    async def _cached(self, key: CacheKey, load: Callable[[], bytes]) -> bytes:
        found = self.cache.get(key)
        if found is None:
            found = await asyncio.to_thread(load)
            self.cache.put(key, found)
        return found

    async def _lora(self, job: jobs_pb2.RenderJob) -> bytes:
        ref = ObjectRef(
            job.tenant, job.subject_id, lora_key(job.tenant, job.subject_id, job.training_id), "lora"
        )
        try:
            return await self._cached(
                CacheKey(job.tenant, job.subject_id, f"lora/{job.training_id}"),
                lambda: self.platform.sealed.get(ref),
            )
        except ObjectMissing as missing:
            raise PermanentJobFailure("the training's model is not available") from missing

    async def _templates(self, job: jobs_pb2.RenderJob) -> FloatArray:
        """The identity reference as (n, 128): the templates sealed beside the model, which live as long as
        it does; for a model from before those, the subject's photo templates (while they last)."""

        def load() -> bytes:
            ref = ObjectRef(
                job.tenant,
                job.subject_id,
                model_faces_key(job.tenant, job.subject_id, job.training_id),
                MODEL_FACES_KIND,
            )
            try:
                return unpack_template_set(self.platform.sealed.get(ref)).tobytes()
            except ObjectMissing:
                return self._photo_templates(job)

        key = CacheKey(job.tenant, job.subject_id, f"{FACES_ITEM}/{job.training_id}")
        blob = await self._cached(key, load)
        templates: FloatArray = np.frombuffer(blob, dtype=np.float32).reshape(-1, EMBEDDING_SIZE)
        return templates

    def _photo_templates(self, job: jobs_pb2.RenderJob) -> bytes:
        """Ingest's templates of the subject's photos (one listing, one batched decrypt)."""
        prefix = f"{subject_prefix(job.tenant, job.subject_id)}faces/"
        for attempt in (1, 2):
            refs = [
                ObjectRef(job.tenant, job.subject_id, stored.key, "face")
                for stored in self.platform.store.list_current(prefix)
            ]
            try:
                return parse_templates(self.platform.sealed.get_many(refs)).tobytes()
            except ObjectMissing:
                if attempt == 2:  # deleted between listing and reading (retention): list again once
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------------ rendering

    @contextlib.asynccontextmanager
    async def _merged(self, lora: bytes | None, identity: FaceEmbeds | None) -> AsyncIterator[None]:
        """The LoRA merged into the resident pipeline (in a thread: it copies weights), always taken out."""
        stack = contextlib.ExitStack()
        try:
            await asyncio.to_thread(stack.enter_context, subject_lora(self.pipe, lora))
        except ValueError as unusable:
            raise PermanentJobFailure(
                "the training's model does not fit this renderer's base model"
            ) from unusable
        try:
            if identity is not None and self.instant is not None:
                # Beside the LoRA when there is one: the two combine.
                stack.enter_context(identity_attached(self.pipe, self.instant.adapter, self.instant.scale))
            yield
        finally:
            await asyncio.to_thread(stack.close)

    def style_for(self, job: jobs_pb2.RenderJob, style_id: str) -> Style:
        """The style on this model's family, with the job's catalog choices in place of its own."""
        choices = self.catalog.choose(job.background, job.outfit, job.lighting)
        return self.styles[style_id].for_family(self.style_family).with_choices(choices)

    def render_batch(
        self,
        job: jobs_pb2.RenderJob,
        style_index: int,
        phrase: str,
        templates: FloatArray | None,
        flag: CancelFlag,
        identity: FaceEmbeds | None = None,
    ) -> BatchResult:
        """One style of a job (runs in a worker thread): render in one batch, score, re-roll."""
        style = self.style_for(job, job.styles[style_index])
        seeds = [job.seed + style_index * 1000 + i for i in range(job.images_per_style)]
        scorer, reference = self.scorer, templates

        def score(image: PIL.Image.Image) -> FaceScore:
            assert scorer is not None
            assert reference is not None
            return scorer.score(image, reference)

        return gated_batch(
            seeds,
            lambda batch: generate(self.pipe, style, batch, phrase, self.inference_steps, identity=identity),
            score if scorer is not None and reference is not None else None,
            self.policy,
            have_templates=templates is not None and len(templates) > 0,
            cancelled=flag.is_set,
            judge_safety=self.safety.judge if self.safety is not None else None,
        )

    async def _render(
        self,
        job: jobs_pb2.RenderJob,
        flag: CancelFlag,
        lora: bytes | None,
        templates: FloatArray | None,
        identity: FaceEmbeds | None = None,
    ) -> None:
        phrase = read_lora_metadata(lora).subject_phrase if lora is not None else INSTANT_PHRASE
        quality = JobQuality(
            mode=self.policy.mode,
            requested=len(job.styles) * job.images_per_style,
            max_rerolls=self.policy.max_rerolls,
            max_distance=self.policy.max_distance,
            templates=0 if templates is None else len(templates),
            safety_mode=self.policy.safety_mode if self.safety is not None else "off",
        )

        def mark_running(record: renderer_pb2.Render) -> bool:
            if record.status in TERMINAL:
                raise JobCancelled
            record.status = JS.JOB_STATUS_RUNNING
            # The gates' modes from the start, so the images recorded meanwhile read right.
            record.quality.CopyFrom(quality.as_started())
            return True

        if await self.records.mutate(job.tenant, job.render_id, mark_running) is None:
            raise JobCancelled
        storing: asyncio.Task[None] | None = None
        try:
            async with self._merged(lora, identity):
                for style_index, style_id in enumerate(job.styles):
                    if flag.is_set():
                        raise JobCancelled
                    result = await asyncio.to_thread(
                        self.render_batch, job, style_index, phrase, templates, flag, identity
                    )
                    quality.add(result)
                    if storing is not None:
                        await storing
                    # Marked, encrypted and stored while the next style renders (CPU work beside the
                    # GPU's); records are written in style order.
                    fingerprint = self.style_for(job, style_id).prompt_sha256(phrase)
                    storing = asyncio.create_task(
                        self._store_batch(job, style_id, result.kept, quality.delivered, fingerprint)
                    )
            if storing is not None:
                await storing
                storing = None
        finally:
            if storing is not None:
                storing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await storing
        del lora, identity
        if flag.is_set():
            raise JobCancelled
        self._count(quality)
        await self._succeed(job, quality)

    async def _store_batch(
        self,
        job: jobs_pb2.RenderJob,
        style_id: str,
        outputs: list[Output],
        delivered: int,
        prompt_sha256: str,
    ) -> None:
        stored = await asyncio.gather(
            *(self._store_image(job, style_id, output, prompt_sha256) for output in outputs)
        )
        await self._record_images(job, list(stored), delivered)

    async def _store_image(
        self, job: jobs_pb2.RenderJob, style_id: str, output: Output, prompt_sha256: str
    ) -> renderer_pb2.RenderedImage:
        """Marks one image and stores it encrypted; the images of a batch go through this in parallel."""
        png = await asyncio.to_thread(self.marker.mark, output.image)
        image_id = ids.new_id("img")
        key = render_image_key(job.tenant, job.subject_id, job.render_id, image_id)
        await asyncio.to_thread(
            self.platform.sealed.put, ObjectRef(job.tenant, job.subject_id, key, "render"), png
        )
        return renderer_pb2.RenderedImage(
            id=image_id,
            style=style_id,
            seed=output.seed,
            content_type=self.marker.content_type,
            size_bytes=len(png),
            quality=output.as_image_quality(),
            prompt_sha256=prompt_sha256,
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

    def _count(self, quality: JobQuality) -> None:
        IMAGES.inc(quality.delivered)
        REROLLS.inc(quality.rerolls)
        GATE_FAILURES.labels(quality.mode).inc(quality.failures)
        for reason, count in quality.dropped.items():
            GATE_DROPS.labels(reason).inc(count)
        for distance in quality.distances:
            IDENTITY.observe(distance)

    async def _succeed(self, job: jobs_pb2.RenderJob, quality: JobQuality) -> None:
        shortfall = quality.shortfall_reason()
        status = JS.JOB_STATUS_SUCCEEDED if quality.delivered else JS.JOB_STATUS_FAILED

        def succeed(record: renderer_pb2.Render) -> bool:
            if record.status in TERMINAL:
                return False
            record.status = status
            record.error = shortfall
            record.progress.total_steps = quality.requested
            record.quality.CopyFrom(quality.as_render_quality())
            return True

        if await self.records.mutate(job.tenant, job.render_id, succeed) is None:
            raise JobCancelled
        job_ended(RENDER, status)
        if status == JS.JOB_STATUS_FAILED:
            await self._announce_failure(job, shortfall, cancelled=False)
            return
        await self._publish_completed(job, quality.delivered)

    async def _publish_completed(self, job: jobs_pb2.RenderJob, image_count: int, once: bool = False) -> None:
        """`once`: unless the stream holds it already (a redelivery past the duplicate window)."""
        event = events_pb2.RenderCompleted(
            tenant=job.tenant,
            subject_id=job.subject_id,
            render_id=job.render_id,
            image_count=image_count,
            at=now_timestamp(),
        )
        nats_subject = event_nats_subject(job.tenant, job.subject_id, "render.completed")
        msg_id = f"{job.render_id}.completed"
        if once:
            await self.platform.bus.publish_once(nats_subject, event, msg_id)
        else:
            await self.platform.bus.publish(nats_subject, event, msg_id=msg_id)

    async def finish(
        self, job: jobs_pb2.RenderJob, status: common_pb2.JobStatus.ValueType, reason: str
    ) -> None:
        job_ended(RENDER, status, delivery=self.delivery, max_deliver=self.max_deliver)

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
        await self._announce_failure(job, reason, cancelled=status == JS.JOB_STATUS_CANCELLED)

    async def _announce_failure(self, job: jobs_pb2.RenderJob, reason: str, cancelled: bool) -> None:
        event = events_pb2.RenderFailed(
            tenant=job.tenant,
            subject_id=job.subject_id,
            render_id=job.render_id,
            reason=reason,
            cancelled=cancelled,
            at=now_timestamp(),
        )
        await self.platform.bus.publish(
            event_nats_subject(job.tenant, job.subject_id, "render.failed"),
            event,
            msg_id=f"{job.render_id}.failed",
        )
