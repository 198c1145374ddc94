"""Output review (issue 16, item 4) against the real NATS, S3 and Vault API: the render worker with the
tiny base model in this process, retention's reaper on a test clock.

- A planted safety classifier (the tiny random `ViTForImageClassification`, its head biased to `nsfw`,
  pinned by its manifest) flags the outputs: under `enforce` they are re-rolled, then dropped, and the
  render counts the reason; under `score` they are kept with their scores; a clean classifier keeps all.
- A model 200 days old: retention's clock moved forward past the photos' 30 days (their templates are
  deleted with them) but inside the model's 365; the identity gate still scores against the templates
  the trainer sealed beside the model, so a render of the person scores as the person.
- The person rejects one image: every version of it goes, the other stays; through the running stack,
  each image's gate scores are in the API and the person's own token rejects one.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from nats.js.api import RetentionPolicy, StreamConfig
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

import renderer.worker
from ingest.templates import FaceTemplate
from likeness import ids
from likeness.bus import event_nats_subject
from likeness.config import CommonSettings
from likeness.consent import BY_SUBJECT, HEADSHOTS, consent_key
from likeness.grpc_tls import channel_credentials
from likeness.grpc_user_tokens import token_metadata
from likeness.jobs import JobRecords
from likeness.method_access import acting_as
from likeness.object_names import face_template_key, lora_key, photo_key, render_image_key, subject_prefix
from likeness.provisioning import CONSENTS_BUCKET, retention_resources
from likeness.runtime import Platform
from likeness.sealed import ObjectRef, SealedObjects
from likeness.store import ObjectStore
from likeness.timeutil import ManualClock, now_timestamp, to_timestamp
from likeness.user_tokens import Principal
from likeness.v1 import common_pb2, events_pb2, jobs_pb2, renderer_pb2, renderer_pb2_grpc, retention_pb2
from likeness.vault_transit import SubjectKeys
from likeness_dev.infra import Infra
from likeness_dev.journey import GatewayClient
from likeness_dev.samples import astronaut
from likeness_dev.stack import DevStack
from likeness_dev.testing import private_tenant_queues, provision_for_test, provisioned_kv
from likeness_dev.tokens import ALL_SCOPES, DEV_TENANT
from likeness_ml.base_model import load_pipeline
from likeness_ml.face_templates import parse_photo_templates
from likeness_ml.lora_adapters import remove_lora
from likeness_ml.lora_format import LORA_TARGET_MODULES, LoraMetadata, serialize_lora
from likeness_ml.subject import SUBJECT_PHRASE
from likeness_ml.tiny_model import build_tiny_pipeline, write_tiny_pipeline
from likeness_ml.tiny_safety import write_tiny_safety_classifier
from renderer.config import RendererSettings
from renderer.identity import FaceScorer
from renderer.quality import GatePolicy
from renderer.rejection import ImageNotFound, image_to_reject, settle_rejection
from renderer.safety import SafetyGate
from renderer.styles import load_styles
from renderer.worker import RenderWorker
from retention.config import RetentionSettings
from retention.item_purge import item_prefixes
from retention.records import RetentionRecords
from retention.service import RetentionServicer
from trainer.training_objects import TrainingObjects

JS = common_pb2.JobStatus
DAY = timedelta(days=1)


def _lora(pipe: StableDiffusionPipeline) -> bytes:
    config = LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=list(LORA_TARGET_MODULES))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        pipe.unet.add_adapter(config, adapter_name="review")
    try:
        state = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet, adapter_name="review"))
    finally:
        remove_lora(pipe.unet)
    return serialize_lora({k: v * 0.3 for k, v in state.items()}, LoraMetadata(4, 4, "tiny", SUBJECT_PHRASE))


@dataclass
class Harness:
    platform: Platform
    worker: RenderWorker
    records: JobRecords[renderer_pb2.Render]
    queue: str
    tenant: str
    lora: bytes
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def new_subject(self, subject_id: str | None = None) -> tuple[str, str]:
        """A subject (Vault key, live `headshots` grant as retention writes it) with a stored LoRA."""
        subject_id = subject_id or ids.new_id("sub")
        training_id = ids.new_id("trn")
        if not await asyncio.to_thread(self.platform.keys.exists, subject_id):
            await asyncio.to_thread(self.platform.keys.create, subject_id)
        grants = retention_pb2.SubjectConsents(
            tenant=self.tenant,
            subject_id=subject_id,
            grants=[
                retention_pb2.ConsentGrant(
                    id=ids.new_id("cns"), purpose=HEADSHOTS, granted_at=now_timestamp(), granted_by=BY_SUBJECT
                )
            ],
        )
        kv = await self.platform.bus.kv(CONSENTS_BUCKET)
        await kv.put(consent_key(self.tenant, subject_id), grants.SerializeToString())
        objects = self.objects(subject_id, training_id)
        await asyncio.to_thread(objects.put_lora, self.lora)
        return subject_id, training_id

    def objects(self, subject_id: str, training_id: str) -> TrainingObjects:
        return TrainingObjects(
            self.platform.sealed, self.platform.store, self.tenant, subject_id, training_id
        )

    async def render(
        self, subject_id: str, training_id: str, per_style: int, seed: int
    ) -> renderer_pb2.Render:
        """What SubmitRender does, on this test's private queue; waits for the end."""
        render = renderer_pb2.Render(
            id=ids.new_id("ren"),
            tenant=self.tenant,
            subject_id=subject_id,
            training_id=training_id,
            status=JS.JOB_STATUS_QUEUED,
            styles=["linkedin"],
            images_per_style=per_style,
            seed=seed,
            progress=common_pb2.Progress(step=0, total_steps=per_style),
            created_at=now_timestamp(),
            updated_at=now_timestamp(),
        )
        await self.records.create(render)
        job = jobs_pb2.RenderJob(
            render_id=render.id,
            tenant=self.tenant,
            subject_id=subject_id,
            training_id=training_id,
            styles=["linkedin"],
            images_per_style=per_style,
            seed=seed,
        )
        await self.platform.bus.publish(f"{self.queue}.{self.tenant}.{subject_id}", job, msg_id=render.id)
        for _ in range(1200):
            found = await self.records.get(self.tenant, render.id)
            assert found is not None
            if found[0].status not in (JS.JOB_STATUS_QUEUED, JS.JOB_STATUS_RUNNING):
                return found[0]
            await asyncio.sleep(0.1)
        raise AssertionError("the render did not finish")

    def gates(self, policy: GatePolicy, safety: SafetyGate | None) -> contextlib.AbstractContextManager[None]:
        @contextlib.contextmanager
        def swapped() -> Any:
            before = self.worker.policy, self.worker.safety
            self.worker.policy, self.worker.safety = policy, safety
            try:
                yield
            finally:
                self.worker.policy, self.worker.safety = before

        return swapped()


@pytest.fixture(scope="module")
async def harness(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    model_dir = write_tiny_pipeline(tmp_path_factory.mktemp("tiny-model"))
    env = {k.removeprefix("LIKENESS_").lower(): v for k, v in infra.endpoints.as_env().items()}
    settings = RendererSettings.model_validate(
        env
        | {"base_model": model_dir, "inference_steps": 2, "ack_wait_seconds": 20.0, "quality_gate": "score"}
    )
    platform = await Platform.connect(settings, "output-review-test")
    name = f"TESTREVIEW{uuid.uuid4().hex[:8].upper()}"
    await platform.bus.js.add_stream(
        StreamConfig(name=name, subjects=[f"{name.lower()}.>"], retention=RetentionPolicy.WORK_QUEUE)
    )
    records = JobRecords(await provisioned_kv(platform.bus, f"{name.lower()}-renders"), renderer_pb2.Render)
    pipe = await asyncio.to_thread(load_pipeline, model_dir, torch.device("cpu"))
    worker = await asyncio.to_thread(RenderWorker, platform, records, load_styles(), settings, pipe)
    made = Harness(platform, worker, records, name.lower(), f"t{secrets.token_hex(5)}", _lora(pipe))
    await private_tenant_queues(platform.bus.js, name, worker, [made.tenant])
    task = asyncio.create_task(worker.run(made.stop))
    yield made
    made.stop.set()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(task, timeout=20)
    await platform.bus.js.delete_stream(name)
    await platform.close()


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SafetyGate]:
    """The tiny classifier planted both ways, each loaded through its manifest like real weights."""
    root = tmp_path_factory.mktemp("safety")
    return {
        planted: SafetyGate.load(
            write_tiny_safety_classifier(root / planted, label_bias={label: 20.0}), ["nsfw"], 0.5
        )
        for planted, label in (("flags", "nsfw"), ("clean", "normal"))
    }


async def test_a_planted_classifier_that_flags_makes_enforce_drop_the_images_with_a_counted_reason(
    harness: Harness, classifiers: dict[str, SafetyGate]
) -> None:
    subject_id, training_id = await harness.new_subject()
    enforce = GatePolicy("off", max_rerolls=1, max_distance=0.6, safety_mode="enforce")
    with harness.gates(enforce, classifiers["flags"]):
        dropped = await harness.render(subject_id, training_id, 2, seed=11)
    assert dropped.status == JS.JOB_STATUS_FAILED
    assert list(dropped.images) == []
    assert dict(dropped.quality.drop_reasons) == {"unsafe:nsfw": 2}
    assert dropped.quality.safety_gate == renderer_pb2.QUALITY_GATE_ENFORCE
    assert dropped.quality.rerolls == 2, "each image was rendered again once before it was dropped"
    assert dropped.error == (
        "2 of 2 images were dropped after 1 re-rolls each: 2 flagged as inappropriate by the safety "
        "classifier (nsfw)"
    )
    prefix = render_image_key(harness.tenant, subject_id, dropped.id, "")
    assert harness.platform.store.list_versions(prefix) == [], "a dropped image is never stored"

    with harness.gates(enforce, classifiers["clean"]):
        kept = await harness.render(subject_id, training_id, 2, seed=11)
    assert kept.status == JS.JOB_STATUS_SUCCEEDED, kept.error
    assert len(kept.images) == 2
    assert dict(kept.quality.drop_reasons) == {}
    for image in kept.images:
        assert image.quality.safety_scores["nsfw"] < 0.01
        assert list(image.quality.safety_flags) == []

    score = GatePolicy("off", max_rerolls=1, max_distance=0.6, safety_mode="score")
    with harness.gates(score, classifiers["flags"]):
        scored = await harness.render(subject_id, training_id, 2, seed=11)
    assert scored.status == JS.JOB_STATUS_SUCCEEDED
    assert len(scored.images) == 2, "score keeps what it flags"
    assert dict(scored.quality.safety_flags) == {"nsfw": 2}
    assert [list(image.quality.safety_flags) for image in scored.images] == [["nsfw"], ["nsfw"]]
    assert not any(image.quality.passed for image in scored.images)


# --- the identity gate over the model's life ----------------------------------------------------------


def _retention_settings(infra: Infra, prefix: str) -> RetentionSettings:
    env = {k.removeprefix("LIKENESS_").lower(): v for k, v in infra.endpoints.as_env().items()}
    return RetentionSettings.model_validate(
        env
        | {
            "kv_bucket_prefix": prefix,
            "hmac_secret": "output-review-hmac-secret",
            "jwt_dev_secret": "output-review-token-secret-0123456789abcdef",
            "photos_days": 30,
            "models_days": 365,
            "inactivity_days": 365,
            "photos_deleted_after_training": False,
        }
    )


@pytest.fixture
async def retention(infra: Infra) -> AsyncIterator[tuple[RetentionServicer, ManualClock]]:
    clock = ManualClock()
    settings = _retention_settings(infra, f"t{secrets.token_hex(4)}_")
    platform = await Platform.connect(settings, "output-review-retention")
    await provision_for_test(platform.bus.js, *retention_resources(settings.kv_bucket_prefix))
    servicer = RetentionServicer(
        platform, await RetentionRecords.open(platform.bus, settings.kv_bucket_prefix), settings, clock
    )
    yield servicer, clock
    await servicer.eraser.stop()
    for bucket in ("subjects", "erasures", "tenants", "deadlines", "leases", "receipts", "consents"):
        with contextlib.suppress(Exception):
            await platform.bus.js.delete_key_value(f"{settings.kv_bucket_prefix}{bucket}")
    with contextlib.suppress(Exception):
        await platform.bus.js.delete_consumer(
            "LIKENESS_EVENTS", f"{settings.kv_bucket_prefix}retention-deadlines"
        )
    await platform.close()


async def _deliver(servicer: RetentionServicer, name: str, event: Any) -> None:
    """One domain event handed to retention's reaper, as its consumer would."""
    nats_subject = event_nats_subject(event.tenant, event.subject_id, name)
    await servicer.reaper.handle_event(
        event.tenant, event.subject_id, nats_subject, event.DESCRIPTOR.full_name, event.SerializeToString()
    )


def _person_templates(scorer: FaceScorer) -> list[bytes]:
    """Ingest's templates (version 1 layout) of three photos of the person."""
    person = astronaut()
    blobs = []
    for side in (512, 448, 384):
        (embedding,) = scorer.embed_faces(person.resize((side, side)))
        header = b"LKFT" + bytes([1, 0, 0, 0]) + side.to_bytes(8, "little")
        blobs.append(header + np.asarray(embedding, dtype="<f4").tobytes())
    return blobs


async def test_on_a_model_200_days_old_the_identity_gate_still_scores_against_the_persons_templates(
    harness: Harness, retention: tuple[RetentionServicer, ManualClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer, clock = retention
    tenant = harness.tenant
    opened = retention_pb2.OpenSubjectRequest(
        tenant=tenant, consent=retention_pb2.Consent(purpose="headshots", policy_version="2026-01")
    )
    with acting_as(Principal(tenant=tenant, scopes=frozenset(ALL_SCOPES))):
        subject_id = (await servicer.OpenSubject(opened, None)).subject.id  # type: ignore[arg-type]
    subject_id, training_id = await harness.new_subject(subject_id)

    # What ingest stores per accepted photo (the crop and its template), announced to retention.
    scorer = harness.worker.scorer or FaceScorer(0.3)
    photo_ids = [ids.new_id("pho") for _ in range(3)]
    for photo_id, template in zip(photo_ids, _person_templates(scorer), strict=True):
        for key, kind, data in (
            (photo_key(tenant, subject_id, photo_id), "photo", b"sanitized crop"),
            (face_template_key(tenant, subject_id, photo_id), "face", template),
        ):
            await asyncio.to_thread(
                harness.platform.sealed.put, ObjectRef(tenant, subject_id, key, kind), data
            )
        accepted = events_pb2.PhotoAccepted(
            tenant=tenant, subject_id=subject_id, photo_id=photo_id, at=to_timestamp(clock.now())
        )
        await _deliver(servicer, "photo.accepted", accepted)

    # The trainer, as it finishes: the photos' templates sealed beside the model, then the LoRA.
    objects = harness.objects(subject_id, training_id)
    assert await asyncio.to_thread(objects.seal_templates_of, photo_ids) == 3
    completed = events_pb2.TrainingCompleted(
        tenant=tenant, subject_id=subject_id, training_id=training_id, at=to_timestamp(clock.now())
    )
    await _deliver(servicer, "training.completed", completed)

    # 200 days on: the photos (30 days) and their templates are gone, the model (365 days) is not.
    clock.advance(200 * DAY)
    await servicer.sweep()
    store = harness.platform.store
    assert store.list_versions(f"{subject_prefix(tenant, subject_id)}faces/") == []
    assert store.list_versions(f"{subject_prefix(tenant, subject_id)}photos/") == []
    assert [v.key for v in store.list_versions(objects.prefix)] == sorted(
        [objects.faces_ref.key, objects.lora_ref.key]
    )

    # The tiny model draws no face: render the person instead, so the identity gate has one to score.
    def the_person(
        pipe: Any, style: Any, seeds: Sequence[int], *args: Any, **kwargs: Any
    ) -> list[PIL.Image.Image]:
        return [astronaut().resize((448, 448)) for _ in seeds]

    monkeypatch.setattr(renderer.worker, "generate", the_person)
    scorer_before = harness.worker.scorer
    harness.worker.scorer = scorer
    try:
        with harness.gates(GatePolicy("enforce", max_rerolls=0, max_distance=0.6), None):
            render = await harness.render(subject_id, training_id, 2, seed=5)
    finally:
        harness.worker.scorer = scorer_before
    assert render.status == JS.JOB_STATUS_SUCCEEDED, render.error
    assert render.quality.templates == 3, "scored against the templates sealed beside the model"
    assert render.quality.note == ""
    for image in render.images:
        assert image.quality.faces == 1
        assert image.quality.HasField("identity_distance")
        assert image.quality.identity_distance < 0.3
        assert image.quality.passed

    # Deleting the model (its own deadline, at 365 days) deletes the templates with it.
    clock.advance(166 * DAY)
    await servicer.sweep()
    assert store.list_versions(objects.prefix) == []


# --- rejection ----------------------------------------------------------------------------------------


async def test_the_person_rejects_one_image_and_every_version_of_it_goes(
    harness: Harness, classifiers: dict[str, SafetyGate]
) -> None:
    subject_id, training_id = await harness.new_subject()
    with harness.gates(GatePolicy("off", 1, 0.6, safety_mode="score"), classifiers["clean"]):
        render = await harness.render(subject_id, training_id, 2, seed=21)
    assert render.status == JS.JOB_STATUS_SUCCEEDED, render.error
    rejected, kept = render.images
    store = harness.platform.store
    rejected_key = render_image_key(harness.tenant, subject_id, render.id, rejected.id)
    kept_key = render_image_key(harness.tenant, subject_id, render.id, kept.id)
    # A second version of the rejected image (an overwrite): it must go too.
    again = ObjectRef(harness.tenant, subject_id, rejected_key, "render")
    await asyncio.to_thread(harness.platform.sealed.put, again, b"an older version")
    assert len(store.list_versions(rejected_key)) == 2

    # The renderer checks the image is there; retention removes every version (PurgeItem names the object
    # from the kind and ids); the renderer settles the record.
    image_to_reject(render, rejected.id)
    [prefix] = item_prefixes(
        harness.tenant, subject_id, retention_pb2.ITEM_KIND_IMAGE, rejected.id, render.id
    ).prefixes
    assert prefix == rejected_key
    await asyncio.to_thread(store.delete_all_versions, prefix)
    after = await settle_rejection(harness.records, render, rejected.id)
    assert [image.id for image in after.images] == [kept.id]
    assert after.quality.rejected == 1
    assert store.list_versions(rejected_key) == []
    kept_bytes = await asyncio.to_thread(
        harness.platform.sealed.get, ObjectRef(harness.tenant, subject_id, kept_key, "render")
    )
    assert kept_bytes[:8] == b"\x89PNG\r\n\x1a\n", "the other image is intact"
    found = await harness.records.get(harness.tenant, render.id)
    assert found is not None
    assert [image.id for image in found[0].images] == [kept.id]
    with pytest.raises(ImageNotFound):
        image_to_reject(found[0], rejected.id)
    again = await settle_rejection(harness.records, found[0], rejected.id)
    assert again.quality.rejected == 1, "settling again changes nothing (a retried confirmation)"
    assert io.BytesIO(kept_bytes).getbuffer().nbytes == kept.size_bytes


# --- through the running stack ------------------------------------------------------------------------


def test_images_carry_their_gate_scores_and_the_person_rejects_one_through_the_gateway(
    stack: DevStack, gateway: GatewayClient
) -> None:
    """The gateway shows each image's gate scores; the person's own token deletes one image (every
    version), the other stays; the render counts the rejection."""
    env = stack.infra.endpoints.as_env()
    settings = CommonSettings.model_validate({k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()})
    store = ObjectStore.from_settings(settings)
    sealed = SealedObjects(SubjectKeys.from_settings(settings), store)
    consent = {"consent": {"purpose": "headshots", "policy_version": "1"}}
    subject_id = gateway.json("POST", "/v1/subjects", expect=(201,), json=consent)["id"]
    training_id = ids.new_id("trn")
    tenant = DEV_TENANT
    sealed.put(
        ObjectRef(tenant, subject_id, lora_key(tenant, subject_id, training_id), "lora"),
        _lora(build_tiny_pipeline()),
    )

    with grpc.secure_channel(
        stack.services["renderer"].address,
        channel_credentials(stack.pki.issue("gateway").material),
        options=[("grpc.ssl_target_name_override", "renderer")],
    ) as channel:
        # As the gateway does (the training record is the trainer's; this test seals only the LoRA).
        request = renderer_pb2.SubmitRenderRequest(
            tenant=tenant,
            subject_id=subject_id,
            training_id=training_id,
            styles=["linkedin"],
            images_per_style=2,
        )
        token = token_metadata(stack.mint_token(tenant=tenant))
        stub = renderer_pb2_grpc.RendererServiceStub(channel)
        render_id = stub.SubmitRender(request, timeout=10, metadata=token).render.id

    render = gateway.wait(
        f"/v1/renders/{render_id}",
        lambda r: r["status"] in {"succeeded", "failed", "cancelled"},
        120,
        print,
        "render",
    )
    assert render["status"] == "succeeded", render.get("error")
    assert render["quality"]["identity_gate"] == "score", "the tiny dev model: scored, not enforced"
    assert render["quality"]["images_requested"] == 2
    for image in render["images"]:
        assert image["quality"]["faces"] == 0, "the tiny model draws noise: no face, and so it says"
        assert image["quality"]["passed"] is False

    rejected, kept = render["images"]
    person = {"Authorization": f"Bearer {stack.mint_token(tenant=tenant, subject=subject_id)}"}
    answer = gateway.json("DELETE", rejected["url"], headers=person)
    assert answer["crypto_erase"] is False
    assert "not a crypto-erase" in answer["notice"]
    after = answer["render"]
    assert [image["id"] for image in after["images"]] == [kept["id"]]
    assert after["quality"]["rejected"] == 1
    key = render_image_key(tenant, subject_id, render_id, rejected["id"])
    assert store.list_versions(key) == [], "every version of it is gone"
    assert gateway.call("GET", rejected["url"], expect=(404,)).status_code == 404
    assert gateway.call("GET", kept["url"]).content[:8] == b"\x89PNG\r\n\x1a\n"
    gateway.call("DELETE", rejected["url"], expect=(404,), headers=person)


def test_the_trainer_reads_the_templates_ingest_writes() -> None:
    """Ingest writes a photo's template, likeness_ml reads it for the trainer (two packages, one layout:
    ingest's image has no torch, so it cannot share the reader)."""
    embedding = np.random.default_rng(3).normal(size=128).astype(np.float32)
    written = FaceTemplate(embedding=tuple(float(v) for v in embedding), perceptual_hash=2**63 + 5).to_bytes()
    read = parse_photo_templates([written])
    assert read.shape == (1, 128)
    assert np.array_equal(read[0], embedding)
