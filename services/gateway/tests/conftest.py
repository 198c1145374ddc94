"""Fixtures for the gateway's tests: in-process grpc.aio doubles of the four services, the app, tokens.

The doubles are our own gRPC contracts with simple in-memory behaviour (scoped by tenant, like the real
services); the real services are exercised end to end elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import nats
import pytest
import pytest_asyncio
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from gateway.app import create_app
from gateway.backends import SERVICE_NAMES
from gateway.config import GatewaySettings
from likeness.grpc_tls import static_server_credentials
from likeness.grpc_user_tokens import bearer_token
from likeness.ids import new_id
from likeness.provisioning import BucketSpec, erasures_consumer
from likeness.quota_policy import Refusal
from likeness.quotas import refuse
from likeness.rpc_errors import abort
from likeness.v1 import (
    common_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    renderer_pb2,
    renderer_pb2_grpc,
    retention_pb2,
    retention_pb2_grpc,
    trainer_pb2,
    trainer_pb2_grpc,
)
from likeness_dev.dev_pki import DevCertificateAuthority
from likeness_dev.infra import Infra
from likeness_dev.testing import provision_for_test
from likeness_dev.tokens import ALL_SCOPES as DEV_SCOPES
from likeness_dev.tokens import mint_dev_token

SECRET = "gateway-tests-secret-0123456789abcdef"
TENANT = "acme"
OTHER_TENANT = "globex"
MAX_UPLOAD_BYTES = 1024 * 1024
MAX_FILES = 4
JPEG_MAGIC = b"\xff\xd8\xff\xe0"
#: Every scope a route of the gateway asks for (the dev CLI's list plus the tenant-admin scopes).
ALL_SCOPES: tuple[str, ...] = (
    *DEV_SCOPES,
    *(s for s in ("retention:read", "retention:write", "looks:read", "looks:write") if s not in DEV_SCOPES),
)
Context = grpc.aio.ServicerContext[Any, Any]


def now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def later(days: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + timedelta(days=days))
    return stamp


class FakeRetention(retention_pb2_grpc.RetentionServiceServicer):
    def __init__(self) -> None:
        self.subjects: dict[tuple[str, str], retention_pb2.Subject] = {}
        self.erasures: dict[tuple[str, str], retention_pb2.Erasure] = {}
        self.policies: dict[str, retention_pb2.RetentionSchedule] = {}
        #: GetSubject of these subject ids takes this many seconds.
        self.delays: dict[str, float] = {}
        self.opened: list[retention_pb2.OpenSubjectRequest] = []
        #: GetSubject of these subject ids fails with (status, machine code); UNKNOWN raises in the servicer.
        self.failures: dict[str, tuple[grpc.StatusCode, str]] = {}

    async def OpenSubject(self, request: retention_pb2.OpenSubjectRequest, context: Context) -> Any:
        self.opened.append(request)
        subject = retention_pb2.Subject(
            tenant=request.tenant,
            id=new_id("sub"),
            status=retention_pb2.SUBJECT_STATUS_ACTIVE,
            created_at=now(),
            consent=request.consent,
            retention=retention_pb2.RetentionSchedule(
                photos_days=30, photos_deleted_after_training=True, models_days=90, renders_days=90
            ),
            delete_by=later(180),
        )
        self.subjects[(request.tenant, subject.id)] = subject
        return retention_pb2.OpenSubjectResponse(subject=subject)

    async def GetSubject(self, request: retention_pb2.GetSubjectRequest, context: Context) -> Any:
        if request.subject_id in self.delays:
            await asyncio.sleep(self.delays[request.subject_id])
        if request.subject_id in self.failures:
            status, code = self.failures[request.subject_id]
            if status == grpc.StatusCode.UNKNOWN:
                raise RuntimeError("a detail the caller must never see")
            await abort(context, status, code, f"made to fail with {status.name}")
        subject = self.subjects.get((request.tenant, request.subject_id))
        if subject is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "no such subject")
        return retention_pb2.GetSubjectResponse(subject=subject)

    async def EraseSubject(self, request: retention_pb2.EraseSubjectRequest, context: Context) -> Any:
        subject = self.subjects.get((request.tenant, request.subject_id))
        if subject is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "no such subject")
        if subject.erasure_id:  # as retention does: the erasure under way or done
            return retention_pb2.EraseSubjectResponse(
                erasure=self.erasures[(request.tenant, subject.erasure_id)]
            )
        erasure = retention_pb2.Erasure(
            id=new_id("era"),
            tenant=request.tenant,
            subject_hmac="f" * 64,
            status=retention_pb2.ERASURE_STATUS_PENDING,
            cause=request.cause,
            key_name=f"likeness-subject-{subject.id}",
            requested_at=now(),
            attempts=1,
        )
        self.erasures[(request.tenant, erasure.id)] = erasure
        subject.status = retention_pb2.SUBJECT_STATUS_ERASING
        subject.erasure_id = erasure.id
        return retention_pb2.EraseSubjectResponse(erasure=erasure)

    async def GetErasure(self, request: retention_pb2.GetErasureRequest, context: Context) -> Any:
        erasure = self.erasures.get((request.tenant, request.erasure_id))
        if erasure is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "erasure_not_found", "no such erasure")
        return retention_pb2.GetErasureResponse(erasure=erasure)

    async def ListSubjects(self, request: retention_pb2.ListSubjectsRequest, context: Context) -> Any:
        mine = sorted(
            (
                subject
                for (tenant, subject_id), subject in self.subjects.items()
                if tenant == request.tenant
                and subject.status != retention_pb2.SUBJECT_STATUS_ERASED
                and (not request.page_token or subject_id < request.page_token)
            ),
            key=lambda subject: subject.id,
            reverse=True,
        )
        size = request.page_size or 50
        page = mine[:size]
        token = page[-1].id if len(mine) > size else ""
        return retention_pb2.ListSubjectsResponse(subjects=page, next_page_token=token)

    async def GetRetentionPolicy(
        self, request: retention_pb2.GetRetentionPolicyRequest, context: Context
    ) -> Any:
        schedule = self.policies.get(request.tenant)
        return retention_pb2.GetRetentionPolicyResponse(
            schedule=schedule or retention_pb2.RetentionSchedule(photos_days=30, models_days=365),
            tenant_specific=schedule is not None,
            hard_cap_days=1095,
            backups_retention_days=30,
            text=f"Policy of {request.tenant}.",
        )

    async def SetRetentionPolicy(
        self, request: retention_pb2.SetRetentionPolicyRequest, context: Context
    ) -> Any:
        if request.schedule.photos_days > 1095:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "invalid_schedule", "too long")
        self.policies[request.tenant] = request.schedule
        return retention_pb2.SetRetentionPolicyResponse(schedule=request.schedule)

    async def GetErasureReceipt(
        self, request: retention_pb2.GetErasureReceiptRequest, context: Context
    ) -> Any:
        erasure = self.erasures.get((request.tenant, request.erasure_id))
        if erasure is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "receipt_not_found", "no receipt")
        receipt = {
            "receipt": {"type": "likeness.erasure_receipt", "erasure_id": erasure.id},
            "signature": {"alg": "Ed25519", "kid": "k1", "value": "c2ln"},
        }
        return retention_pb2.GetErasureReceiptResponse(receipt_json=json.dumps(receipt))

    async def GetReceiptKeys(self, request: retention_pb2.GetReceiptKeysRequest, context: Context) -> Any:
        keys = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "eA", "kid": "k1"}]}
        return retention_pb2.GetReceiptKeysResponse(jwks_json=json.dumps(keys))


@dataclass
class ReceivedUpload:
    header: ingest_pb2.PhotoUploadHeader
    chunks: list[bytes] = field(default_factory=list)


class FakeIngest(ingest_pb2_grpc.IngestServiceServicer):
    """Accepts anything that starts like a JPEG; remembers every message it received."""

    def __init__(self) -> None:
        self.uploads: list[ReceivedUpload] = []
        self.photos: dict[tuple[str, str], list[ingest_pb2.Photo]] = {}
        self.chunk_arrived = asyncio.Event()

    async def SanitizePhoto(self, request_iterator: AsyncIterator[Any], context: Context) -> Any:
        upload: ReceivedUpload | None = None
        async for message in request_iterator:
            if upload is None:
                if message.WhichOneof("part") != "header":
                    await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "header_first", "header first")
                upload = ReceivedUpload(header=message.header)
                self.uploads.append(upload)
                continue
            upload.chunks.append(message.chunk)
            self.chunk_arrived.set()
        assert upload is not None
        data = b"".join(upload.chunks)
        photo = ingest_pb2.Photo(
            id=new_id("pho"),
            tenant=upload.header.tenant,
            subject_id=upload.header.subject_id,
            created_at=now(),
        )
        if data.startswith(JPEG_MAGIC):
            photo.status = ingest_pb2.PHOTO_STATUS_ACCEPTED
            photo.width = photo.height = 512
            photo.scores["sharpness"] = 0.9
        else:
            photo.status = ingest_pb2.PHOTO_STATUS_REJECTED
            photo.reasons.append(
                common_pb2.Reason(code="unsupported_format", message="Not a photo we can read.")
            )
        self.photos.setdefault((photo.tenant, photo.subject_id), []).append(photo)
        return ingest_pb2.SanitizePhotoResponse(photo=photo)

    async def ListPhotos(self, request: ingest_pb2.ListPhotosRequest, context: Context) -> Any:
        # Paged as ingest pages (oldest first, the token is the last id of the page).
        mine = sorted(
            (
                p
                for p in self.photos.get((request.tenant, request.subject_id), [])
                if p.id > request.page_token
            ),
            key=lambda photo: photo.id,
        )
        size = request.page_size or 50
        token = mine[size - 1].id if len(mine) > size else ""
        return ingest_pb2.ListPhotosResponse(photos=mine[:size], next_page_token=token)


class FakeTrainer(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self) -> None:
        self.trainings: dict[tuple[str, str], trainer_pb2.Training] = {}
        self.submitted: list[trainer_pb2.SubmitTrainingRequest] = []
        #: GetTraining calls answered (the job cache's tests count them).
        self.reads = 0
        #: A quota refusal every submit answers, as the real serve role does (`likeness.quotas`).
        self.quota_refusal: Refusal | None = None
        self.usage = common_pb2.QuotaUsage(
            day="20261205",
            jobs_in_flight=1,
            max_jobs_in_flight=4,
            gpu_seconds_today=12.5,
            max_gpu_seconds_per_day=3600.0,
            max_training_steps=3000,
        )

    async def SubmitTraining(self, request: trainer_pb2.SubmitTrainingRequest, context: Context) -> Any:
        self.submitted.append(request)
        if self.quota_refusal is not None:
            await refuse(context, request.tenant, self.quota_refusal)
        if not request.photo_ids:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "no_photos", "no photos")
        training = trainer_pb2.Training(
            id=new_id("trn"),
            tenant=request.tenant,
            subject_id=request.subject_id,
            status=common_pb2.JOB_STATUS_QUEUED,
            progress=common_pb2.Progress(step=0, total_steps=request.steps or 500),
            photo_ids=request.photo_ids,
            created_at=now(),
            updated_at=now(),
        )
        self.trainings[(request.tenant, training.id)] = training
        return trainer_pb2.SubmitTrainingResponse(training=training)

    async def _find(self, tenant: str, training_id: str, context: Context) -> trainer_pb2.Training:
        training = self.trainings.get((tenant, training_id))
        if training is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "training_not_found", "no such training")
        return training

    async def GetTraining(self, request: trainer_pb2.GetTrainingRequest, context: Context) -> Any:
        self.reads += 1
        return trainer_pb2.GetTrainingResponse(
            training=await self._find(request.tenant, request.training_id, context)
        )

    async def ListTrainings(self, request: trainer_pb2.ListTrainingsRequest, context: Context) -> Any:
        mine = _page_of(
            [t for (tenant, _), t in self.trainings.items() if tenant == request.tenant],
            request.subject_id,
            request.page_token,
        )
        size = request.page_size or 50
        token = mine[size - 1].id if len(mine) > size else ""
        return trainer_pb2.ListTrainingsResponse(trainings=mine[:size], next_page_token=token)

    async def CancelTraining(self, request: trainer_pb2.CancelTrainingRequest, context: Context) -> Any:
        training = await self._find(request.tenant, request.training_id, context)
        if training.status not in (common_pb2.JOB_STATUS_QUEUED, common_pb2.JOB_STATUS_RUNNING):
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, "training_finished", "already finished")
        training.status = common_pb2.JOB_STATUS_CANCELLED
        return trainer_pb2.CancelTrainingResponse(training=training)

    async def GetTrainingUsage(self, request: trainer_pb2.GetTrainingUsageRequest, context: Context) -> Any:
        return trainer_pb2.GetTrainingUsageResponse(usage=self.usage)


STYLES = [
    renderer_pb2.Style(id="corporate", name="Corporate", description="Neutral grey backdrop"),
    renderer_pb2.Style(id="studio", name="Studio", description="Soft key light"),
]


class FakeRenderer(renderer_pb2_grpc.RendererServiceServicer):
    IMAGE_CHUNK = 64 * 1024

    def __init__(self) -> None:
        self.renders: dict[tuple[str, str], renderer_pb2.Render] = {}
        self.images: dict[str, bytes] = {}
        self.submitted: list[renderer_pb2.SubmitRenderRequest] = []
        self.looks: dict[tuple[str, str], renderer_pb2.TeamLook] = {}
        self.quota_refusal: Refusal | None = None
        self.usage = common_pb2.QuotaUsage(
            day="20261205", jobs_in_flight=3, max_jobs_in_flight=16, gpu_seconds_today=12.5
        )

    async def GetRenderUsage(self, request: renderer_pb2.GetRenderUsageRequest, context: Context) -> Any:
        return renderer_pb2.GetRenderUsageResponse(usage=self.usage)

    async def SubmitRender(self, request: renderer_pb2.SubmitRenderRequest, context: Context) -> Any:
        self.submitted.append(request)
        if self.quota_refusal is not None:
            await refuse(context, request.tenant, self.quota_refusal)
        render = renderer_pb2.Render(
            id=new_id("ren"),
            tenant=request.tenant,
            subject_id=request.subject_id,
            training_id=request.training_id,
            status=common_pb2.JOB_STATUS_QUEUED,
            styles=request.styles,
            images_per_style=request.images_per_style,
            seed=request.seed,
            progress=common_pb2.Progress(step=0, total_steps=len(request.styles) * request.images_per_style),
            created_at=now(),
            updated_at=now(),
        )
        self.renders[(request.tenant, render.id)] = render
        return renderer_pb2.SubmitRenderResponse(render=render)

    def complete(self, tenant: str, render_id: str, image: bytes) -> str:
        """Marks a render succeeded with one image; returns the image id."""
        render = self.renders[(tenant, render_id)]
        image_id = new_id("img")
        render.images.append(
            renderer_pb2.RenderedImage(
                id=image_id, style=render.styles[0], seed=7, content_type="image/png", size_bytes=len(image)
            )
        )
        render.status = common_pb2.JOB_STATUS_SUCCEEDED
        self.images[image_id] = image
        return image_id

    async def GetRender(self, request: renderer_pb2.GetRenderRequest, context: Context) -> Any:
        render = self.renders.get((request.tenant, request.render_id))
        if render is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "render_not_found", "no such render")
        return renderer_pb2.GetRenderResponse(render=render)

    async def FetchImage(self, request: renderer_pb2.FetchImageRequest, context: Context) -> Any:
        render = self.renders.get((request.tenant, request.render_id))
        info = (
            next((image for image in render.images if image.id == request.image_id), None) if render else None
        )
        if info is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "image_not_found", "no such image")
        yield renderer_pb2.FetchImageResponse(info=info)
        data = self.images[request.image_id]
        for start in range(0, len(data), self.IMAGE_CHUNK):
            yield renderer_pb2.FetchImageResponse(chunk=data[start : start + self.IMAGE_CHUNK])

    async def ListStyles(self, request: renderer_pb2.ListStylesRequest, context: Context) -> Any:
        return renderer_pb2.ListStylesResponse(
            styles=STYLES,
            backgrounds=[renderer_pb2.Background(id="brick_wall", name="Brick", description="brick wall")],
            outfits=[renderer_pb2.CatalogOption(id="navy_suit", name="Navy suit", preview="A navy suit.")],
            lighting_setups=[
                renderer_pb2.CatalogOption(id="rembrandt", name="Rembrandt", preview="Side light.")
            ],
        )

    async def ListRenders(self, request: renderer_pb2.ListRendersRequest, context: Context) -> Any:
        mine = _page_of(
            [r for (tenant, _), r in self.renders.items() if tenant == request.tenant],
            request.subject_id,
            request.page_token,
        )
        size = request.page_size or 50
        token = mine[size - 1].id if len(mine) > size else ""
        return renderer_pb2.ListRendersResponse(renders=mine[:size], next_page_token=token)

    async def PutTeamLook(self, request: renderer_pb2.PutTeamLookRequest, context: Context) -> Any:
        if request.style not in {style.id for style in STYLES}:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "unknown_style", "unknown style")
        look = renderer_pb2.TeamLook(
            tenant=request.tenant,
            id=request.look_id,
            name=request.name,
            style=request.style,
            background=request.background,
            seed_policy=request.seed_policy,
            seed=request.seed if request.HasField("seed") else 42,
            created_at=now(),
            updated_at=now(),
        )
        self.looks[(request.tenant, request.look_id)] = look
        return renderer_pb2.PutTeamLookResponse(look=look)

    async def GetTeamLook(self, request: renderer_pb2.GetTeamLookRequest, context: Context) -> Any:
        look = self.looks.get((request.tenant, request.look_id))
        if look is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "team_look_not_found", "no such look")
        return renderer_pb2.GetTeamLookResponse(look=look)

    async def ListTeamLooks(self, request: renderer_pb2.ListTeamLooksRequest, context: Context) -> Any:
        looks = [look for (tenant, _), look in self.looks.items() if tenant == request.tenant]
        return renderer_pb2.ListTeamLooksResponse(looks=looks)

    async def DeleteTeamLook(self, request: renderer_pb2.DeleteTeamLookRequest, context: Context) -> Any:
        if self.looks.pop((request.tenant, request.look_id), None) is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "team_look_not_found", "no such look")
        return renderer_pb2.DeleteTeamLookResponse()


def _page_of(records: list[Any], subject_id: str, after: str) -> list[Any]:
    """A subject's job records, newest first, after the page token."""
    mine = [r for r in records if r.subject_id == subject_id and (not after or r.id < after)]
    return sorted(mine, key=lambda record: record.id, reverse=True)


class TokenRecorder(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Remembers the bearer token each backend call carried: the gateway forwards its caller's."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        self.calls.append((details.method.rsplit("/", 1)[-1], bearer_token(details.invocation_metadata)))
        return await continuation(details)


@dataclass
class Fakes:
    retention: FakeRetention
    ingest: FakeIngest
    trainer: FakeTrainer
    renderer: FakeRenderer
    addresses: dict[str, str]
    health: dict[str, HealthServicer]
    nats_url: str
    #: The gateway's certificate, key and CA (its LIKENESS_TLS_DIR): the doubles require it.
    gateway_tls_dir: str
    #: (method, bearer token) of every call the doubles received (part S2: tokens are forwarded).
    tokens: TokenRecorder

    async def set_serving(self, name: str, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health[name].set(SERVICE_NAMES[name], status)


@pytest_asyncio.fixture(scope="session")
async def fakes(infra: Infra, add_backend_port: BackendPort, gateway_tls_dir: str) -> AsyncIterator[Fakes]:
    servicers = {
        "retention": (FakeRetention(), retention_pb2_grpc.add_RetentionServiceServicer_to_server),
        "ingest": (FakeIngest(), ingest_pb2_grpc.add_IngestServiceServicer_to_server),
        "trainer": (FakeTrainer(), trainer_pb2_grpc.add_TrainerServiceServicer_to_server),
        "renderer": (FakeRenderer(), renderer_pb2_grpc.add_RendererServiceServicer_to_server),
    }
    servers, addresses, health = [], {}, {}
    recorder = TokenRecorder()
    for name, (servicer, register) in servicers.items():
        server = grpc.aio.server(interceptors=[recorder])
        register(servicer, server)  # type: ignore[operator]
        health[name] = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health[name], server)
        port = add_backend_port(server, name)
        await server.start()
        await health[name].set(SERVICE_NAMES[name], health_pb2.HealthCheckResponse.SERVING)
        servers.append(server)
        addresses[name] = f"127.0.0.1:{port}"
    yield Fakes(
        retention=servicers["retention"][0],  # type: ignore[arg-type]
        ingest=servicers["ingest"][0],  # type: ignore[arg-type]
        trainer=servicers["trainer"][0],  # type: ignore[arg-type]
        renderer=servicers["renderer"][0],  # type: ignore[arg-type]
        addresses=addresses,
        health=health,
        nats_url=infra.endpoints.nats_url,
        gateway_tls_dir=gateway_tls_dir,
        tokens=recorder,
    )
    await asyncio.gather(*(server.stop(None) for server in servers))


BackendPort = Callable[[grpc.aio.Server, str], int]


@pytest.fixture(scope="session")
def add_backend_port(dev_ca: DevCertificateAuthority) -> BackendPort:
    """add_backend_port(server, "ingest"): a free loopback port serving mutual TLS as that backend (its
    certificate from the tests' CA, a client certificate of that CA required), as the real ones do."""

    def add(server: grpc.aio.Server, identity: str) -> int:
        credentials = static_server_credentials(dev_ca.issue(identity).material)
        return server.add_secure_port("127.0.0.1:0", credentials)  # a free port, chosen by the kernel

    return add


@pytest.fixture(scope="session")
def gateway_tls_dir(dev_ca: DevCertificateAuthority, tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(dev_ca.issue("gateway").write(tmp_path_factory.mktemp("gateway-tls")))


def gateway_settings(fakes: Fakes, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "env": "development",
        "jwt_dev_secret": SECRET,
        "nats_url": fakes.nats_url,
        "idempotency_secret": "gateway-tests-idempotency-secret-0123456789abcdef",
        "metrics_port": 0,
        # Every read asks the retention double (tests change subjects behind the gateway's back).
        "subject_status_cache_seconds": 0,
        # Nor are trainings and renders remembered (the doubles change them without events).
        "job_cache_seconds": 0,
        # Tests send bursts far beyond a tenant's real budget; the limiter has its own tests.
        "rate_limit_per_second": 100_000,
        "rate_limit_burst": 100_000,
        "upload_rate_limit_per_second": 100_000,
        "upload_rate_limit_burst": 100_000,
        # Each test app gets its own bucket (records of one test never answer another's requests) and its
        # own purge consumer: an app of this process joined to the stack gateway's would hold erasures it
        # cannot ack while no test drives its event loop, delaying the stack's purges by the ack wait.
        "idempotency_bucket": f"gw_idem_{(app_id := uuid.uuid4().hex[:12])}",
        "erasures_durable": f"gw_erasures_{app_id}",
        "retention_addr": fakes.addresses["retention"],
        "ingest_addr": fakes.addresses["ingest"],
        "trainer_addr": fakes.addresses["trainer"],
        "renderer_addr": fakes.addresses["renderer"],
        "tls_dir": fakes.gateway_tls_dir,
        "grpc_timeout_seconds": 5,
        "stream_timeout_seconds": 10,
        "readiness_timeout_seconds": 2,
        "max_upload_bytes": MAX_UPLOAD_BYTES,
        "max_files_per_request": MAX_FILES,
        "min_photos_for_training": 1,
    }
    values.update(overrides)
    return GatewaySettings(**values)


ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


async def _provision_app(settings: GatewaySettings) -> None:
    """The app's own idempotency bucket and erasures consumer, as `likeness bootstrap` makes the real ones
    (the gateway only binds); as the tests' admin, on the session's NATS."""
    nc = await nats.connect(settings.nats_url, connect_timeout=5)
    try:
        bucket = BucketSpec(settings.idempotency_bucket, ttl=float(settings.idempotency_ttl_seconds))
        await provision_for_test(nc.jetstream(), [bucket], [erasures_consumer(settings.erasures_durable)])
    finally:
        await nc.close()


@pytest.fixture(scope="session")
def make_client(fakes: Fakes) -> ClientFactory:
    """A client of a fresh app with these setting overrides (its lifespan runs around the client)."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = gateway_settings(fakes, **overrides)
        await _provision_app(settings)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            for _ in range(200):  # NATS connects in the background: wait for it, as /readyz would
                if app.state.nats.idempotency is not None:
                    break
                await asyncio.sleep(0.05)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                client.app = app  # type: ignore[attr-defined]  # for tests that look inside
                yield client

    return factory


@pytest_asyncio.fixture(scope="session")
async def client(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as shared:
        yield shared


TokenFactory = Callable[..., str]


@pytest.fixture(scope="session")
def token() -> TokenFactory:
    def mint(
        tenant: str = TENANT,
        scopes: Sequence[str] = ALL_SCOPES,
        subject: str | None = None,
        ttl_seconds: int = 3600,
        secret: str = SECRET,
    ) -> str:
        return mint_dev_token(secret, tenant, scopes, subject=subject, ttl_seconds=ttl_seconds)

    return mint


AuthFactory = Callable[..., dict[str, str]]


@pytest.fixture(scope="session")
def auth(token: TokenFactory) -> AuthFactory:
    """Authorization headers for a token minted with these arguments."""

    def headers(**claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(**claims)}"}

    return headers


SubjectFactory = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
def new_subject(client: httpx.AsyncClient, auth: AuthFactory) -> SubjectFactory:
    async def create(tenant: str = TENANT) -> str:
        body = {"consent": {"purpose": "headshots", "policy_version": "2025-01"}}
        response = await client.post("/v1/subjects", json=body, headers=auth(tenant=tenant))
        assert response.status_code == 201, response.text
        subject_id: str = response.json()["id"]
        return subject_id

    return create


def multipart_body(files: Sequence[tuple[str, bytes]], boundary: str = "likeness-test-boundary") -> bytes:
    """A multipart/form-data body with one `file` part per (filename, data)."""
    parts = []
    for filename, data in files:
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


@pytest.fixture(scope="session")
def multipart() -> Callable[..., bytes]:
    return multipart_body


@dataclass
class World:
    """One tenant's resources in every state a route needs (ids by kind)."""

    subject: str
    other_subject: str
    photo: str
    training: str  # queued, so it can be cancelled
    done_training: str  # succeeded, so it can be rendered from
    render: str
    image: str
    image_bytes: bytes
    erased_subject: str
    erasure: str


UPLOAD_HEADERS = {"Content-Type": "multipart/form-data; boundary=likeness-test-boundary"}


async def build_world(
    client: httpx.AsyncClient, auth: AuthFactory, new_subject: SubjectFactory, fakes: Fakes
) -> World:
    headers = auth()
    subject, other_subject, erased_subject = [await new_subject() for _ in range(3)]
    upload = await client.post(
        f"/v1/subjects/{subject}/photos",
        content=multipart_body([("me.jpg", JPEG_MAGIC + b"pixels")]),
        headers={**headers, **UPLOAD_HEADERS},
    )
    assert upload.status_code == 200, upload.text
    trainings = []
    for _ in range(2):
        response = await client.post(f"/v1/subjects/{subject}/trainings", json={"steps": 10}, headers=headers)
        assert response.status_code == 202, response.text
        trainings.append(response.json()["id"])
    fakes.trainer.trainings[(TENANT, trainings[1])].status = common_pb2.JOB_STATUS_SUCCEEDED
    response = await client.post(
        f"/v1/subjects/{subject}/renders",
        json={"training_id": trainings[1], "styles": ["corporate"], "images_per_style": 1},
        headers=headers,
    )
    assert response.status_code == 202, response.text
    render = response.json()["id"]
    image_bytes = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 800
    image = fakes.renderer.complete(TENANT, render, image_bytes)
    response = await client.delete(f"/v1/subjects/{erased_subject}", headers=headers)
    assert response.status_code == 202, response.text
    return World(
        subject=subject,
        other_subject=other_subject,
        photo=upload.json()["photos"][0]["id"],
        training=trainings[0],
        done_training=trainings[1],
        render=render,
        image=image,
        image_bytes=image_bytes,
        erased_subject=erased_subject,
        erasure=response.json()["erasure_id"],
    )


@pytest_asyncio.fixture
async def world(
    client: httpx.AsyncClient, auth: AuthFactory, new_subject: SubjectFactory, fakes: Fakes
) -> World:
    """A fresh world, for tests that change it."""
    return await build_world(client, auth, new_subject, fakes)


@pytest_asyncio.fixture(scope="session")
async def shared_world(
    client: httpx.AsyncClient, auth: AuthFactory, new_subject: SubjectFactory, fakes: Fakes
) -> World:
    """One world for the whole session, for tests that only read it (or are refused before any change)."""
    return await build_world(client, auth, new_subject, fakes)
