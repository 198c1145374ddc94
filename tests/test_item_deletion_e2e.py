"""Per-item deletion through the real stack (issue 16, item 3): one image, one render, one photo, one model.

One person's journey (three photos, a training, two renders) is made once for the module; each test then
deletes one item through the gateway and checks, with root credentials, that nothing of it is left (no
object version or delete marker under its prefix, no record in its owner's KV bucket, not listed, not
served) while every other item of the person is intact (still listed, still downloadable, still
decrypting). Each answer says that it is not a crypto-erase. Another person's token gets 404 and deletes
nothing. A compromised renderer (its certificate) cannot have retention purge a photo: the caller table
refuses it, while the same call from the gateway's identity goes through.

The tests run in file order: each deletes the next item of the same journey.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import nats
import nats.js.errors
import pytest

from likeness import ids
from likeness.config import CommonSettings
from likeness.grpc_tls import channel_credentials
from likeness.grpc_user_tokens import token_metadata
from likeness.object_names import face_template_key, lora_key, photo_key, render_image_key, subject_prefix
from likeness.sealed import ObjectRef, SealedObjects
from likeness.store import ObjectStore
from likeness.v1 import retention_pb2, retention_pb2_grpc
from likeness.vault_transit import SubjectKeys
from likeness_client import LikenessClient, NotFound
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_dev.tokens import ALL_SCOPES, DEV_TENANT

pytestmark = pytest.mark.slow

TENANT = DEV_TENANT
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class Journey:
    stack: DevStack
    client: LikenessClient
    sealed: SealedObjects
    store: ObjectStore
    subject_id: str
    photos: list[str]
    training_id: str
    render_id: str
    images: list[str]
    other_render_id: str

    def decrypts(self, key: str, kind: str) -> bytes:
        return self.sealed.get(ObjectRef(TENANT, self.subject_id, key, kind))

    def versions(self, prefix: str) -> list[str]:
        """Every version and delete marker kept under `prefix` (a marker hides a version; it is not gone)."""
        return [f"{stored.key}@{stored.version_id}" for stored in self.store.list_versions(prefix)]

    def kept_by_owner(self, bucket: str, item_id: str) -> int:
        """How many messages of the owner's KV bucket hold data naming the item (a record or a revision).
        A purge marker has no data: it keeps a job's id in its key (never a person's id: job buckets are
        keyed `<tenant>.<job>`), as erasure leaves them. Other records may name the item by design: a
        training names its photos, a render its training."""

        async def scan() -> int:
            nc = await nats.connect(self.stack.infra.endpoints.nats_url)  # the admin user
            try:
                js = nc.jetstream()
                state = (await js.stream_info(bucket)).state
                assert state.messages > 0, "the scan must read the bucket (else it proves nothing)"
                kept = 0
                for sequence in range(state.first_seq, state.last_seq + 1):
                    try:
                        message = await js.get_msg(bucket, sequence)
                    except nats.js.errors.NotFoundError:
                        continue  # purged: nothing of it is kept
                    named = item_id in (message.subject or "") or item_id.encode() in (message.data or b"")
                    kept += named and bool(message.data)
                return kept
            finally:
                await nc.close()

        return asyncio.run(scan())

    def another_person(self) -> LikenessClient:
        token = self.stack.mint_token(scopes=ALL_SCOPES, subject=ids.new_id("sub"))
        return LikenessClient(self.stack.gateway_url, token, timeout=60)


@pytest.fixture(scope="module")
def journey(stack: DevStack) -> Iterator[Journey]:
    env = stack.infra.endpoints.as_env()
    settings = CommonSettings.model_validate({k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()})
    store = ObjectStore.from_settings(settings)
    sealed = SealedObjects(SubjectKeys.from_settings(settings), store)
    with LikenessClient(stack.gateway_url, stack.mint_token(scopes=ALL_SCOPES), timeout=120) as client:
        subject = client.create_subject(purpose="headshots", policy_version="2026-01")
        uploaded = client.upload_photos(subject.id, sample_photos(3)).photos
        photos = [photo.id for photo in uploaded if photo.accepted]
        assert len(photos) == 3, uploaded
        training = client.create_training(subject.id, steps=2)
        trained = list(client.poll_training(training.id, interval=0.5))[-1]
        assert trained.status == "succeeded", trained
        renders = []
        for images_per_style in (2, 1):
            accepted = client.create_render(
                subject.id, training_id=training.id, styles=["linkedin"], images_per_style=images_per_style
            )
            done = list(client.poll_render(accepted.id, interval=0.5))[-1]
            assert done.status == "succeeded", done
            renders.append(done)
        yield Journey(
            stack=stack,
            client=client,
            sealed=sealed,
            store=store,
            subject_id=subject.id,
            photos=sorted(photos),
            training_id=training.id,
            render_id=renders[0].id,
            images=[image.id for image in renders[0].images],
            other_render_id=renders[1].id,
        )


def assert_not_a_crypto_erase(answer: object) -> None:
    assert getattr(answer, "crypto_erase") is False  # noqa: B009
    assert "not a crypto-erase" in getattr(answer, "notice")  # noqa: B009
    assert getattr(answer, "backups_expire_within_days") > 0  # noqa: B009


def test_deleting_one_image_leaves_nothing_of_it_and_the_other_image_intact(journey: Journey) -> None:
    rejected, kept = journey.images
    key = render_image_key(TENANT, journey.subject_id, journey.render_id, rejected)
    # An older version of the image (an overwrite): a deletion must remove it too.
    journey.sealed.put(ObjectRef(TENANT, journey.subject_id, key, "render"), b"an older version")
    assert len(journey.versions(key)) == 2
    assert journey.kept_by_owner("KV_renders", rejected) > 0, "the scan sees the live image's record"

    with journey.another_person() as stranger, pytest.raises(NotFound):
        stranger.reject_image(journey.render_id, rejected)
    assert len(journey.versions(key)) == 2, "another person's token deleted nothing"

    answer = journey.client.reject_image(journey.render_id, rejected)
    assert (answer.kind, answer.id, answer.render_id) == ("image", rejected, journey.render_id)
    assert answer.versions_deleted == 1  # one object, both of its versions
    assert_not_a_crypto_erase(answer)
    assert answer.render is not None
    assert [image.id for image in answer.render.images] == [kept]
    assert journey.versions(key) == []
    assert journey.kept_by_owner("KV_renders", rejected) == 0
    with pytest.raises(NotFound):
        journey.client.download_image(journey.render_id, rejected)
    with pytest.raises(NotFound):  # a retry finds nothing left to delete
        journey.client.reject_image(journey.render_id, rejected)

    assert journey.client.download_image(journey.render_id, kept)[:8] == PNG_MAGIC
    assert [image.id for image in journey.client.get_render(journey.render_id).images] == [kept]


def test_deleting_a_render_leaves_nothing_of_it_and_the_other_render_intact(journey: Journey) -> None:
    render = journey.client.get_render(journey.other_render_id)
    prefix = f"{subject_prefix(TENANT, journey.subject_id)}renders/{render.id}/"
    assert journey.versions(prefix)
    assert journey.kept_by_owner("KV_renders", render.id) > 0
    with journey.another_person() as stranger, pytest.raises(NotFound):
        stranger.delete_render(render.id)

    answer = journey.client.delete_render(render.id)
    assert (answer.kind, answer.id, answer.subject_id) == ("render", render.id, journey.subject_id)
    assert answer.versions_deleted == len(render.images)
    assert_not_a_crypto_erase(answer)
    assert journey.versions(prefix) == []
    assert journey.kept_by_owner("KV_renders", render.id) == 0
    with pytest.raises(NotFound):
        journey.client.get_render(render.id)
    assert render.id not in {listed.id for listed in journey.client.iter_renders(journey.subject_id)}

    kept = journey.images[1]
    assert journey.client.download_image(journey.render_id, kept)[:8] == PNG_MAGIC


def test_deleting_a_photo_names_the_model_trained_on_it_and_leaves_the_others_intact(
    journey: Journey,
) -> None:
    deleted, *others = journey.photos
    keys = [
        photo_key(TENANT, journey.subject_id, deleted),
        face_template_key(TENANT, journey.subject_id, deleted),
    ]
    assert all(journey.versions(key) for key in keys)
    assert journey.kept_by_owner("KV_photos", deleted) > 0
    with journey.another_person() as stranger, pytest.raises(NotFound):
        stranger.delete_photo(journey.subject_id, deleted)
    assert all(journey.versions(key) for key in keys)

    answer = journey.client.delete_photo(journey.subject_id, deleted)
    assert (answer.kind, answer.id) == ("photo", deleted)
    assert answer.versions_deleted == 2  # the crop and its face template
    assert_not_a_crypto_erase(answer)
    assert answer.models_trained_on_it is not None
    [model] = answer.models_trained_on_it
    assert (model.training_id, model.deleted) == (journey.training_id, False)
    assert model.delete_url == f"/v1/trainings/{journey.training_id}"
    assert all(journey.versions(key) == [] for key in keys)
    assert journey.kept_by_owner("KV_photos", deleted) == 0
    assert [photo.id for photo in journey.client.iter_photos(journey.subject_id)] == others

    for photo_id in others:
        crop = journey.decrypts(photo_key(TENANT, journey.subject_id, photo_id), "photo")
        assert crop[:8] == PNG_MAGIC
    lora = journey.decrypts(lora_key(TENANT, journey.subject_id, journey.training_id), "lora")
    assert lora, "the model trained on it stays until it is deleted itself"
    with pytest.raises(NotFound):
        journey.client.delete_photo(journey.subject_id, deleted)


def test_deleting_a_model_leaves_nothing_of_it_and_the_photos_and_images_intact(journey: Journey) -> None:
    prefix = f"{subject_prefix(TENANT, journey.subject_id)}models/{journey.training_id}/"
    assert len(journey.versions(prefix)) >= 2, "the LoRA and the face templates sealed beside it"
    assert journey.kept_by_owner("KV_trainings", journey.training_id) > 0
    with journey.another_person() as stranger, pytest.raises(NotFound):
        stranger.delete_training(journey.training_id)

    answer = journey.client.delete_training(journey.training_id)
    assert (answer.kind, answer.id) == ("model", journey.training_id)
    assert answer.versions_deleted >= 2
    assert_not_a_crypto_erase(answer)
    assert journey.versions(prefix) == []
    assert journey.kept_by_owner("KV_trainings", journey.training_id) == 0
    with pytest.raises(NotFound):
        journey.client.get_training(journey.training_id)

    remaining = journey.photos[1:]
    assert [photo.id for photo in journey.client.iter_photos(journey.subject_id)] == remaining
    for photo_id in remaining:
        assert journey.decrypts(photo_key(TENANT, journey.subject_id, photo_id), "photo")[:8] == PNG_MAGIC
    assert journey.client.download_image(journey.render_id, journey.images[1])[:8] == PNG_MAGIC


def test_a_compromised_renderer_cannot_have_retention_purge_a_photo(journey: Journey) -> None:
    """The renderer's certificate is refused by retention's caller table; the same call from the gateway's
    identity goes through (so the refusal is the caller's identity, not a malformed call)."""
    target = journey.photos[1]
    key = photo_key(TENANT, journey.subject_id, target)
    request = retention_pb2.PurgeItemRequest(
        tenant=TENANT, subject_id=journey.subject_id, kind=retention_pb2.ITEM_KIND_PHOTO, item_id=target
    )
    token = token_metadata(journey.stack.mint_token(scopes=ALL_SCOPES))

    def purge_as(identity: str) -> retention_pb2.PurgeItemResponse:
        credentials = channel_credentials(journey.stack.pki.issue(identity).material)
        options = [("grpc.ssl_target_name_override", "retention")]
        address = journey.stack.services["retention"].address
        with grpc.secure_channel(address, credentials, options=options) as channel:
            stub = retention_pb2_grpc.RetentionServiceStub(channel)
            return stub.PurgeItem(request, timeout=10, metadata=token)

    with pytest.raises(grpc.RpcError) as refused:
        purge_as("renderer")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert journey.decrypts(key, "photo")[:8] == PNG_MAGIC, "the photo is intact"

    assert purge_as("gateway").versions_deleted == 2  # the crop and its face template
    assert journey.versions(key) == []
