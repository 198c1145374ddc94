"""GDPR data export: `GET /v1/subjects/{id}/export` against the real stack (every byte decrypted by the
service that owns it), who may export what, and a backend failing half-way through cutting the stream
(checked in-process over real HTTP, with a gRPC double of the backends that fails on cue).

The export holds every category (issue 16): the face templates and the LoRA in the archive load through
the code that reads them in Likeness (`likeness_ml.face_templates`, the renderer's `read_lora`) and are
exactly what the services hold, decrypted here with root credentials through the services' own readers;
every item carries its deletion date."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import PIL.Image
import pytest
import uvicorn

from gateway.app import create_app
from gateway.backends import Backends
from gateway.config import GatewaySettings
from gateway.export_zip import ZipStream
from ingest.templates import FaceTemplate, SubjectTemplates
from likeness.config import CommonSettings
from likeness.grpc_tls import static_server_credentials
from likeness.object_names import lora_key, model_faces_key
from likeness.sealed import ObjectRef, SealedObjects
from likeness.store import ObjectStore
from likeness.user_tokens import TENANT_WIDE_SCOPE
from likeness.v1 import (
    ingest_pb2,
    ingest_pb2_grpc,
    renderer_pb2,
    renderer_pb2_grpc,
    retention_pb2,
    retention_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)
from likeness.vault_transit import SubjectKeys
from likeness_client import LikenessClient, TransportError
from likeness_client.audit_models import AuditEntry
from likeness_dev.dev_pki import DevCertificateAuthority
from likeness_dev.ports import free_port
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_dev.tokens import ALL_SCOPES, DEV_TENANT, mint_dev_token
from likeness_ml.face_templates import FloatArray, embeddings_from_json, unpack_template_set
from renderer.lora_swap import read_lora

EXPORT_SCOPES = [*ALL_SCOPES, "subjects:export"]
#: Under the default schedule a model, a render and the person's inactivity all last 365 days, so either
#: deadline may come first by seconds; tests/test_subject_summary_e2e.py pins each rule with distinct periods.
OWN_OR_SUBJECT = {rule: (rule, "inactivity") for rule in ("models_days", "renders_days")}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


# ------------------------------------------------------------------------------------------------- the writer


def test_zip_stream_is_readable_only_once_finished() -> None:
    archive = ZipStream()
    sent = bytearray(archive.add_json("a.json", {"x": 1}))
    sent += archive.begin("photos/p.png")
    for piece in range(5):
        sent += archive.write(bytes([piece]) * 70_000)
    sent += archive.end()
    before_finish = bytes(sent)
    sent += archive.finish()

    entries = read_zip(bytes(sent))
    assert json.loads(entries["a.json"]) == {"x": 1}
    assert entries["photos/p.png"] == b"".join(bytes([piece]) * 70_000 for piece in range(5))
    with zipfile.ZipFile(io.BytesIO(bytes(sent))) as reread:
        assert reread.getinfo("photos/p.png").compress_type == zipfile.ZIP_STORED
        assert reread.getinfo("a.json").compress_type == zipfile.ZIP_DEFLATED
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(before_finish))


def test_zip_stream_refuses_overlapping_entries() -> None:
    archive = ZipStream()
    archive.begin("one")
    with pytest.raises(RuntimeError):
        archive.begin("two")
    with pytest.raises(RuntimeError):
        archive.finish()
    archive.discard()
    assert archive.finished


# --------------------------------------------------------------------------------------------- the real stack


@dataclass
class Exported:
    subject_id: str
    before_training: dict[str, bytes]
    after_render: dict[str, bytes]
    accepted: list[str]
    training_id: str
    render_id: str
    images: dict[str, bytes]
    #: What the services held when each export was made, decrypted through their own readers.
    templates_held: dict[str, FaceTemplate]
    lora_held: bytes
    model_templates_held: FloatArray
    #: The person's processing log after both exports.
    log: list[AuditEntry]


def sealed_objects(stack: DevStack) -> tuple[SealedObjects, ObjectStore]:
    """Root access to the stack's S3 and Vault (the services' credentials each hold only their part)."""
    env = stack.infra.endpoints.as_env()
    settings = CommonSettings.model_validate({k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()})
    store = ObjectStore.from_settings(settings)
    return SealedObjects(SubjectKeys.from_settings(settings), store), store


@pytest.fixture(scope="module")
def exported(stack: DevStack) -> Iterator[Exported]:
    sealed, store = sealed_objects(stack)
    with LikenessClient(stack.gateway_url, stack.mint_token(scopes=EXPORT_SCOPES), timeout=120) as client:
        subject = client.create_subject(
            purpose="headshots", policy_version="2026-01", external_ref="export-1"
        )
        uploaded = client.upload_photos(subject.id, sample_photos(3)).photos
        accepted = [photo.id for photo in uploaded if photo.accepted]
        before = io.BytesIO()
        client.export_subject(subject.id, before)
        # Ingest's own reader of the templates (its duplicate and same-person checks use it).
        templates_held = SubjectTemplates(sealed, store).load(DEV_TENANT, subject.id)

        training = client.create_training(subject.id, steps=4)
        final = list(client.poll_training(training.id, interval=0.5))[-1]
        assert final.status == "succeeded", final
        render = client.create_render(
            subject.id, training_id=training.id, styles=["linkedin"], images_per_style=1, seed=3
        )
        done = list(client.poll_render(render.id, interval=0.5))[-1]
        assert done.status == "succeeded", done
        images = {image.id: client.download_image(render.id, image.id) for image in done.images}
        after = io.BytesIO()
        client.export_subject(subject.id, after)
        tenant = DEV_TENANT
        lora_held = sealed.get(
            ObjectRef(tenant, subject.id, lora_key(tenant, subject.id, training.id), "lora")
        )
        faces = ObjectRef(tenant, subject.id, model_faces_key(tenant, subject.id, training.id), "model-faces")
        # As the renderer's identity gate reads them.
        model_templates_held = unpack_template_set(sealed.get(faces))
    own = stack.mint_token(scopes=["subjects:read"], subject=subject.id)
    with LikenessClient(stack.gateway_url, own, timeout=60) as client:
        log = list(client.iter_processing_log(subject.id))
        yield Exported(
            subject_id=subject.id,
            before_training=read_zip(before.getvalue()),
            after_render=read_zip(after.getvalue()),
            accepted=accepted,
            training_id=training.id,
            render_id=render.id,
            images=images,
            templates_held=templates_held,
            lora_held=lora_held,
            model_templates_held=model_templates_held,
            log=log,
        )


def test_export_holds_the_record_and_the_decrypted_crops(exported: Exported) -> None:
    entries = exported.before_training
    assert {"README.txt", "subject.json", "photos.json", "trainings.json", "renders.json"} <= set(entries)
    assert b"LoRA" in entries["README.txt"]
    subject = json.loads(entries["subject.json"])["subject"]
    assert subject["id"] == exported.subject_id
    assert subject["consent"]["purpose"] == "headshots"
    assert subject["retention"]["models_days"] > 0
    assert "export-1" not in entries["subject.json"].decode(), "the external ref is kept only as a keyed hash"

    photos = json.loads(entries["photos.json"])["photos"]
    assert [p["id"] for p in photos if p["status"] == "accepted"] == sorted(exported.accepted)
    assert exported.accepted
    for photo in photos:
        assert photo["file"] == f"photos/{photo['id']}.png"
        crop = entries[photo["file"]]
        assert crop.startswith(PNG_MAGIC)
        with PIL.Image.open(io.BytesIO(crop)) as image:
            assert image.size == (photo["width"], photo["height"])
            assert not image.info.get("exif"), "the crop carries no metadata"
    assert json.loads(entries["trainings.json"]) == {"trainings": []}
    assert json.loads(entries["renders.json"]) == {"renders": []}


def test_export_after_rendering_lists_trainings_and_holds_the_images(exported: Exported) -> None:
    entries = exported.after_render
    trainings = json.loads(entries["trainings.json"])["trainings"]
    assert [t["id"] for t in trainings] == [exported.training_id]
    assert trainings[0]["status"] == "succeeded"
    assert sorted(trainings[0]["photo_ids"]) == sorted(exported.accepted)
    model = trainings[0]["model"]
    assert model["file"] == f"models/{exported.training_id}.safetensors"
    assert model["bytes"] == len(entries[model["file"]])

    renders = json.loads(entries["renders.json"])["renders"]
    assert [r["id"] for r in renders] == [exported.render_id]
    files = {image["id"]: image["file"] for image in renders[0]["images"]}
    assert set(files) == set(exported.images)
    for image_id, data in exported.images.items():
        assert files[image_id] == f"renders/{exported.render_id}/{image_id}.png"
        assert entries[files[image_id]] == data, "the same bytes as the image download"

    # Photos may have gone after the training (retention); any crop still listed is in the archive.
    for photo in json.loads(entries["photos.json"])["photos"]:
        if photo["file"] is not None:
            assert entries[photo["file"]].startswith(PNG_MAGIC)


# ------------------------------------------------------------------------------------ every category (16)


def test_face_templates_in_the_export_load_and_are_the_ones_ingest_holds(exported: Exported) -> None:
    document = json.loads(exported.before_training["face_templates.json"])
    assert document["embedding_size"] == 128
    exported_photos = {entry["photo_id"]: entry for entry in document["photos"]}
    assert set(exported_photos) == set(exported.templates_held) == set(exported.accepted)
    for photo_id, held in exported.templates_held.items():
        entry = exported_photos[photo_id]
        loaded = embeddings_from_json([entry["embedding"]])
        assert np.array_equal(loaded[0], np.asarray(held.embedding, dtype=np.float32)), "exact float32 values"
        assert held.perceptual_hash is not None
        assert int(entry["perceptual_hash"], 16) == held.perceptual_hash
        assert entry["delete_by"] is not None, "each template's deletion date"
        assert entry["deletion_rule"]
    assert document["models"] == [], "no model trained yet"


def test_the_lora_in_the_export_loads_as_the_renderer_loads_it_and_is_the_model_held(
    exported: Exported,
) -> None:
    entries = exported.after_render
    lora = entries[f"models/{exported.training_id}.safetensors"]
    assert lora == exported.lora_held, "the very weights the renderer decrypts for a render"
    layers = read_lora(lora)  # the renderer's own loader: safetensors with our metadata, every layer whole
    assert layers.metadata.rank > 0
    assert [name for name in entries if name.startswith("models/")] == [
        f"models/{exported.training_id}.safetensors"
    ]

    document = json.loads(entries["face_templates.json"])
    [model] = document["models"]
    assert model["training_id"] == exported.training_id
    assert np.array_equal(embeddings_from_json(model["embeddings"]), exported.model_templates_held)
    assert len(model["embeddings"]) == len(exported.accepted)
    assert model["delete_by"] is not None
    assert model["deletion_rule"] in OWN_OR_SUBJECT["models_days"]


def test_each_decrypting_service_audits_its_part_of_each_export_once(exported: Exported) -> None:
    """Ingest the templates, the trainer each model: one record per export that decrypted them, with the
    exporting principal (the tenant's token here) and the purpose `export`."""
    models = [entry for entry in exported.log if entry.action == "model.exported"]
    assert [(e.resource_id, e.principal, e.purpose) for e in models] == [
        (exported.training_id, "tenant", "export")
    ], "the second export (the only one after training) opened the model once"
    templates = [entry for entry in exported.log if entry.action == "templates.exported"]
    assert templates, "the first export opened the photos' templates"
    assert len(templates) <= 2, "at most once per export"
    assert all((e.principal, e.purpose) == ("tenant", "export") for e in templates)


def test_every_category_is_in_the_export_with_each_item_s_deletion_date(exported: Exported) -> None:
    entries = exported.after_render
    summary = json.loads(entries["summary.json"])
    categories = {category["name"]: category for category in summary["categories"]}
    assert {"photos", "face_templates", "models", "renders", "images", "consents"} <= set(categories)
    assert [item["id"] for item in categories["models"]["items"]] == [exported.training_id]
    assert [item["id"] for item in categories["renders"]["items"]] == [exported.render_id]
    assert {item["id"] for item in categories["images"]["items"]} == set(exported.images)
    for category in summary["categories"]:
        for item in category["items"]:
            assert item["delete_by"] is not None, (category["name"], item)
            assert item["deletion_rule"], (category["name"], item)
    assert summary["delete_by"] is not None
    assert summary["deletion_rule"] in ("hard_cap", "inactivity")

    # The same dates on the items of each file, and the consent history in full.
    [training] = json.loads(entries["trainings.json"])["trainings"]
    assert training["model"]["delete_by"] == categories["models"]["items"][0]["delete_by"]
    [render] = json.loads(entries["renders.json"])["renders"]
    assert render["delete_by"] is not None
    assert render["deletion_rule"] in OWN_OR_SUBJECT["renders_days"]
    assert all(image["delete_by"] is not None for image in render["images"])
    grants = json.loads(entries["consents.json"])["grants"]
    assert [(g["purpose"], g["granted_by"], g["live"]) for g in grants] == [("headshots", "tenant", True)]
    assert [item["id"] for item in categories["consents"]["items"]] == [grants[0]["id"]]
    readme = entries["README.txt"].decode()
    for name in ("summary.json", "consents.json", "face_templates.json", "models/"):
        assert name in readme


def _export(stack: DevStack, subject_id: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(f"{stack.gateway_url}/v1/subjects/{subject_id}/export", headers=headers, timeout=60)


def test_export_is_a_zip_attachment_and_an_end_user_may_export_themselves(
    stack: DevStack, exported: Exported
) -> None:
    own = stack.mint_token(scopes=["subjects:export"], subject=exported.subject_id)
    response = _export(stack, exported.subject_id, own)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert "subject.json" in read_zip(response.content)


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("no token", 401, "unauthenticated"),
        ("missing scope", 403, "insufficient_scope"),
        ("other tenant", 404, "not_found"),
        ("other subject's end-user token", 404, "not_found"),
        ("malformed id", 404, "not_found"),
    ],
)
def test_export_is_refused_without_data(
    stack: DevStack, exported: Exported, case: str, status: int, code: str
) -> None:
    subject_id = exported.subject_id
    token: str | None = {
        "no token": None,
        "missing scope": stack.mint_token(scopes=[s for s in EXPORT_SCOPES if s != "subjects:export"]),
        "other tenant": stack.mint_token(tenant="globex", scopes=EXPORT_SCOPES),
        "other subject's end-user token": stack.mint_token(
            scopes=["subjects:export"], subject="sub_01jbz3k7q8m2x4v6n9p0r5t7wy"
        ),
        "malformed id": stack.mint_token(scopes=EXPORT_SCOPES),
    }[case]
    if case == "malformed id":
        subject_id = "not-an-id"
    response = _export(stack, subject_id, token)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert b"PK" not in response.content[:2]


def test_an_erased_subject_cannot_be_exported(stack: DevStack) -> None:
    with LikenessClient(stack.gateway_url, stack.mint_token(scopes=EXPORT_SCOPES)) as client:
        subject = client.create_subject(purpose="headshots", policy_version="2026-01")
        client.erase_subject(subject.id)
    response = _export(stack, subject.id, stack.mint_token(scopes=EXPORT_SCOPES))
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "subject_erased"


# ----------------------------------------------------------------------------------------------- cut short

SECRET = "export-tests-secret-0123456789abcdef"
TENANT = "acme"
SUBJECT_ID = "sub_01jbz3k7q8m2x4v6n9p0r5t7wy"
PHOTO_ID = "pho_01jbz3m2a4c6e8g0j2k4m6p8rt"
Context = grpc.aio.ServicerContext[Any, Any]


class OneSubject(retention_pb2_grpc.RetentionServiceServicer):
    async def GetSubject(self, request: retention_pb2.GetSubjectRequest, context: Context) -> Any:
        if (request.tenant, request.subject_id) != (TENANT, SUBJECT_ID):
            await context.abort(grpc.StatusCode.NOT_FOUND, "No such subject.")
        subject = retention_pb2.Subject(
            tenant=TENANT, id=SUBJECT_ID, status=retention_pb2.SUBJECT_STATUS_ACTIVE
        )
        return retention_pb2.GetSubjectResponse(subject=subject)

    async def ListConsents(self, request: retention_pb2.ListConsentsRequest, context: Context) -> Any:
        return retention_pb2.ListConsentsResponse()

    async def DescribeHoldings(self, request: retention_pb2.DescribeHoldingsRequest, context: Context) -> Any:
        return retention_pb2.DescribeHoldingsResponse(tenant=TENANT, subject_id=SUBJECT_ID)


class FailingIngest(ingest_pb2_grpc.IngestServiceServicer):
    """Sends the first crop, then half of the second, then fails as a backend going away would."""

    async def ListPhotos(self, request: ingest_pb2.ListPhotosRequest, context: Context) -> Any:
        photo = ingest_pb2.Photo(id=PHOTO_ID, tenant=TENANT, subject_id=SUBJECT_ID)
        photo.status = ingest_pb2.PHOTO_STATUS_ACCEPTED
        return ingest_pb2.ListPhotosResponse(photos=[photo])

    async def ExportFaceTemplates(
        self, request: ingest_pb2.ExportFaceTemplatesRequest, context: Context
    ) -> Any:
        return ingest_pb2.ExportFaceTemplatesResponse()

    async def ExportPhotos(
        self, request: ingest_pb2.ExportPhotosRequest, context: Context
    ) -> AsyncIterator[ingest_pb2.ExportPhotosResponse]:
        for photo_id in (PHOTO_ID, PHOTO_ID.replace("pho_01", "pho_02")):
            yield ingest_pb2.ExportPhotosResponse(
                photo=ingest_pb2.ExportedPhoto(photo_id=photo_id, content_type="image/png")
            )
            yield ingest_pb2.ExportPhotosResponse(chunk=PNG_MAGIC + bytes(300_000))
        await context.abort(grpc.StatusCode.UNAVAILABLE, "storage went away")


class NoTrainings(trainer_pb2_grpc.TrainerServiceServicer):
    async def ListTrainings(self, request: trainer_pb2.ListTrainingsRequest, context: Context) -> Any:
        return trainer_pb2.ListTrainingsResponse()


class NoRenders(renderer_pb2_grpc.RendererServiceServicer):
    async def ListRenders(self, request: renderer_pb2.ListRendersRequest, context: Context) -> Any:
        return renderer_pb2.ListRendersResponse()


@pytest.fixture
async def failing_gateway(
    server_process: None, dev_ca: DevCertificateAuthority, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    server = grpc.aio.server()
    retention_pb2_grpc.add_RetentionServiceServicer_to_server(OneSubject(), server)
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(FailingIngest(), server)
    trainer_pb2_grpc.add_TrainerServiceServicer_to_server(NoTrainings(), server)
    renderer_pb2_grpc.add_RendererServiceServicer_to_server(NoRenders(), server)
    # One double answers as all four backends: its certificate carries each one's name.
    doubles = dev_ca.issue("retention", dns_names=["ingest", "trainer", "renderer"])
    port = server.add_secure_port("127.0.0.1:0", static_server_credentials(doubles.material))
    address = f"127.0.0.1:{port}"
    await server.start()
    settings = GatewaySettings(
        tls_dir=str(dev_ca.issue("gateway").write(tmp_path_factory.mktemp("gateway-tls"))),
        retention_addr=address,
        ingest_addr=address,
        trainer_addr=address,
        renderer_addr=address,
        jwt_dev_secret=SECRET,
        metrics_port=free_port(),
    )
    app = create_app(settings)
    # Only the backends are needed (no NATS: the export does not use it), so the lifespan stays off.
    app.state.backends = Backends.connect(settings)
    port = free_port()
    http = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None, access_log=False)
    )
    serving = asyncio.create_task(http.serve())
    while not http.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        http.should_exit = True
        await serving
        await app.state.backends.close()
        await server.stop(grace=None)


async def test_a_backend_failing_mid_stream_cuts_the_download(failing_gateway: str, tmp_path: Path) -> None:
    token = mint_dev_token(SECRET, TENANT, ["subjects:export", TENANT_WIDE_SCOPE])
    received = bytearray()

    async def download() -> None:
        async with httpx.AsyncClient(base_url=failing_gateway, timeout=30) as http:
            url = f"/v1/subjects/{SUBJECT_ID}/export"
            async with http.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as response:
                assert response.status_code == 200, "the archive had begun when the backend failed"
                async for chunk in response.aiter_raw():
                    received.extend(chunk)

    with pytest.raises(httpx.RemoteProtocolError):
        await download()
    assert f"photos/{PHOTO_ID}.png".encode() in received, "the first crop was on its way"
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bytes(received)))

    # The client reports it, and leaves no file that looks like an export.
    target = tmp_path / "export.zip"
    client = LikenessClient(failing_gateway, token)
    try:
        with pytest.raises(TransportError):
            await asyncio.to_thread(client.export_subject, SUBJECT_ID, target)
    finally:
        client.close()
    assert not await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
