"""The owning service re-verifies the end user's token (issue 14, part 3), on the real stack.

Every method of every service is called as the gateway calls it, with the gateway's own certificate (so
mutual TLS and the caller tables let the call through), but with a token that must not reach the data: none,
an expired one, a forged one, another tenant's, an end user's token for another subject, and a tenant token
without `tenant:all`. Every data-bearing method answers UNAUTHENTICATED, PERMISSION_DENIED or NOT_FOUND and
nothing else: no response, no streamed message, no id of the tenant's in the error. The methods come from
the services' own descriptors, and each must be classified here and in its service's token table, so a new
method cannot slip through. The rightful token gets the data, so the refusals are not a server refusing
everyone.

Records do not name key material for a service to trust: records forged into the services' KV buckets
(with NATS admin rights, as a compromised service holding another's bucket would) that name another
tenant's render, photo or subject key get nothing decrypted and no receipt signed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import nats
import nats.js.errors
import pytest
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from ingest.callers import CALLERS as INGEST_CALLERS
from ingest.method_rules import TOKEN_RULES as INGEST_RULES
from likeness.grpc_tls import ClientTls
from likeness.ids import new_id
from likeness.method_access import Binding, MethodRule
from likeness.user_tokens import TENANT_WIDE_SCOPE
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
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_dev.tokens import ALL_SCOPES, CallerToken, mint_dev_token
from renderer.callers import CALLERS as RENDERER_CALLERS
from renderer.method_rules import TOKEN_RULES as RENDERER_RULES
from retention.callers import CALLERS as RETENTION_CALLERS
from retention.method_rules import TOKEN_RULES as RETENTION_RULES
from trainer.callers import CALLERS as TRAINER_CALLERS
from trainer.method_rules import TOKEN_RULES as TRAINER_RULES

LOOK = "zt-look"
REFUSED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND}


@dataclass(frozen=True)
class World:
    tenant: str
    subject: str
    other_subject: str
    photo: str
    training: str
    render: str
    image: str
    erasure: str

    def ids(self) -> list[str]:
        return [self.subject, self.photo, self.training, self.render, self.image, self.erasure]


def _wait(client: httpx.Client, path: str, timeout: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, Any] = client.get(path).json()
        if record.get("status") in {"succeeded", "failed", "cancelled", "completed"}:
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.5)


@pytest.fixture(scope="module")
def world(stack: DevStack) -> Iterator[World]:
    """A tenant with everything a method can touch: photos, a training, a render, an erasure, a look."""
    tenant = f"zt-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {stack.mint_token(tenant=tenant)}"}
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=60) as client:
        consent = {"consent": {"purpose": "headshots", "policy_version": "2026-01"}}
        subject, other, erased = (client.post("/v1/subjects", json=consent).json()["id"] for _ in range(3))
        files = [("file", (name, data, "image/jpeg")) for name, data in sample_photos(2)]
        uploaded = client.post(f"/v1/subjects/{subject}/photos", files=files)
        assert uploaded.status_code == 200, uploaded.text
        photo = uploaded.json()["photos"][0]["id"]
        training = client.post(f"/v1/subjects/{subject}/trainings", json={}).json()["id"]
        assert _wait(client, f"/v1/trainings/{training}")["status"] == "succeeded"
        body = {"training_id": training, "styles": ["linkedin"], "images_per_style": 1, "seed": 1}
        render = client.post(f"/v1/subjects/{subject}/renders", json=body).json()["id"]
        finished = _wait(client, f"/v1/renders/{render}")
        assert finished["status"] == "succeeded", finished
        look = {"name": "ZT", "style": "linkedin", "background": "light_gray", "seed_policy": "fixed"}
        assert client.put(f"/v1/team-looks/{LOOK}", json=look).status_code == 200
        erasure = client.delete(f"/v1/subjects/{erased}").json()["erasure_id"]
        _wait(client, f"/v1/erasures/{erasure}")
        yield World(tenant, subject, other, photo, training, render, finished["images"][0]["id"], erasure)


# ---------------------------------------------------------------------------------------------- calls

#: Each service's descriptor, stub and token table.
SERVICES: dict[str, tuple[ServiceDescriptor, Any, dict[str, MethodRule]]] = {
    "retention": (
        retention_pb2.DESCRIPTOR.services_by_name["RetentionService"],
        retention_pb2_grpc.RetentionServiceStub,
        dict(RETENTION_RULES),
    ),
    "ingest": (
        ingest_pb2.DESCRIPTOR.services_by_name["IngestService"],
        ingest_pb2_grpc.IngestServiceStub,
        dict(INGEST_RULES),
    ),
    "trainer": (
        trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"],
        trainer_pb2_grpc.TrainerServiceStub,
        dict(TRAINER_RULES),
    ),
    "renderer": (
        renderer_pb2.DESCRIPTOR.services_by_name["RendererService"],
        renderer_pb2_grpc.RendererServiceStub,
        dict(RENDERER_RULES),
    ),
}


def _upload(world: World) -> AsyncIterator[ingest_pb2.SanitizePhotoRequest]:
    async def messages() -> AsyncIterator[ingest_pb2.SanitizePhotoRequest]:
        header = ingest_pb2.PhotoUploadHeader(tenant=world.tenant, subject_id=world.subject)
        yield ingest_pb2.SanitizePhotoRequest(header=header)
        yield ingest_pb2.SanitizePhotoRequest(chunk=sample_photos(1)[0][1])

    return messages()


#: The request each method gets, aimed at the world's own resources (so a refusal is not an absence).
REQUESTS: dict[tuple[str, str], Callable[[World], Any]] = {
    ("retention", "OpenSubject"): lambda w: retention_pb2.OpenSubjectRequest(
        tenant=w.tenant, consent=retention_pb2.Consent(purpose="headshots", policy_version="1")
    ),
    ("retention", "GetSubject"): lambda w: retention_pb2.GetSubjectRequest(
        tenant=w.tenant, subject_id=w.subject
    ),
    ("retention", "EraseSubject"): lambda w: retention_pb2.EraseSubjectRequest(
        tenant=w.tenant, subject_id=w.subject, cause="request"
    ),
    ("retention", "GetErasure"): lambda w: retention_pb2.GetErasureRequest(
        tenant=w.tenant, erasure_id=w.erasure
    ),
    ("retention", "Sweep"): lambda w: retention_pb2.SweepRequest(),
    ("retention", "GetRetentionPolicy"): lambda w: retention_pb2.GetRetentionPolicyRequest(tenant=w.tenant),
    ("retention", "SetRetentionPolicy"): lambda w: retention_pb2.SetRetentionPolicyRequest(
        tenant=w.tenant, schedule=retention_pb2.RetentionSchedule(photos_days=1)
    ),
    ("retention", "GetErasureReceipt"): lambda w: retention_pb2.GetErasureReceiptRequest(
        tenant=w.tenant, erasure_id=w.erasure
    ),
    ("retention", "GetReceiptKeys"): lambda w: retention_pb2.GetReceiptKeysRequest(),
    ("retention", "ListSubjects"): lambda w: retention_pb2.ListSubjectsRequest(tenant=w.tenant),
    # Consent calls aim at `team_look`, which nothing else here needs, so a call let through changes nothing
    # the other tests rely on.
    ("retention", "GrantConsent"): lambda w: retention_pb2.GrantConsentRequest(
        tenant=w.tenant, subject_id=w.subject, purpose="team_look", policy_version="1"
    ),
    ("retention", "ListConsents"): lambda w: retention_pb2.ListConsentsRequest(
        tenant=w.tenant, subject_id=w.subject
    ),
    ("retention", "WithdrawConsent"): lambda w: retention_pb2.WithdrawConsentRequest(
        tenant=w.tenant, subject_id=w.subject, purpose="team_look"
    ),
    ("retention", "GetConsentPolicy"): lambda w: retention_pb2.GetConsentPolicyRequest(tenant=w.tenant),
    ("retention", "SetConsentPolicy"): lambda w: retention_pb2.SetConsentPolicyRequest(
        tenant=w.tenant, policy=retention_pb2.ConsentPolicy()
    ),
    ("ingest", "SanitizePhoto"): _upload,
    ("ingest", "ListPhotos"): lambda w: ingest_pb2.ListPhotosRequest(tenant=w.tenant, subject_id=w.subject),
    ("ingest", "ExportPhotos"): lambda w: ingest_pb2.ExportPhotosRequest(
        tenant=w.tenant, subject_id=w.subject
    ),
    ("trainer", "SubmitTraining"): lambda w: trainer_pb2.SubmitTrainingRequest(
        tenant=w.tenant, subject_id=w.subject, photo_ids=[w.photo], steps=1
    ),
    ("trainer", "GetTraining"): lambda w: trainer_pb2.GetTrainingRequest(
        tenant=w.tenant, training_id=w.training
    ),
    ("trainer", "CancelTraining"): lambda w: trainer_pb2.CancelTrainingRequest(
        tenant=w.tenant, training_id=w.training
    ),
    ("trainer", "WatchTraining"): lambda w: trainer_pb2.WatchTrainingRequest(
        tenant=w.tenant, training_id=w.training
    ),
    ("trainer", "ListTrainings"): lambda w: trainer_pb2.ListTrainingsRequest(
        tenant=w.tenant, subject_id=w.subject
    ),
    ("renderer", "SubmitRender"): lambda w: renderer_pb2.SubmitRenderRequest(
        tenant=w.tenant, subject_id=w.subject, training_id=w.training, styles=["linkedin"], images_per_style=1
    ),
    ("renderer", "GetRender"): lambda w: renderer_pb2.GetRenderRequest(tenant=w.tenant, render_id=w.render),
    ("renderer", "FetchImage"): lambda w: renderer_pb2.FetchImageRequest(
        tenant=w.tenant, render_id=w.render, image_id=w.image
    ),
    ("renderer", "ListStyles"): lambda w: renderer_pb2.ListStylesRequest(),
    ("renderer", "PutTeamLook"): lambda w: renderer_pb2.PutTeamLookRequest(
        tenant=w.tenant, look_id=LOOK, name="Changed", style="linkedin", background="light_gray"
    ),
    ("renderer", "GetTeamLook"): lambda w: renderer_pb2.GetTeamLookRequest(tenant=w.tenant, look_id=LOOK),
    ("renderer", "ListTeamLooks"): lambda w: renderer_pb2.ListTeamLooksRequest(tenant=w.tenant),
    ("renderer", "DeleteTeamLook"): lambda w: renderer_pb2.DeleteTeamLookRequest(
        tenant=w.tenant, look_id=LOOK
    ),
    ("renderer", "ListRenders"): lambda w: renderer_pb2.ListRendersRequest(
        tenant=w.tenant, subject_id=w.subject
    ),
    ("renderer", "RejectImage"): lambda w: renderer_pb2.RejectImageRequest(
        tenant=w.tenant, render_id=w.render, image_id=w.image
    ),
    # Per-item deletion and rectification (issue 16): only the first, marking step, with wrong tokens only.
    ("renderer", "DeleteRender"): lambda w: renderer_pb2.DeleteRenderRequest(
        tenant=w.tenant, render_id=w.render
    ),
    ("trainer", "DeleteTraining"): lambda w: trainer_pb2.DeleteTrainingRequest(
        tenant=w.tenant, training_id=w.training
    ),
    ("ingest", "DeletePhoto"): lambda w: ingest_pb2.DeletePhotoRequest(
        tenant=w.tenant, subject_id=w.subject, photo_id=w.photo
    ),
    ("retention", "PurgeItem"): lambda w: retention_pb2.PurgeItemRequest(
        tenant=w.tenant, subject_id=w.subject, kind=retention_pb2.ITEM_KIND_PHOTO, item_id=w.photo
    ),
    ("retention", "RectifySubject"): lambda w: retention_pb2.RectifySubjectRequest(
        tenant=w.tenant, subject_id=w.subject, external_ref="changed"
    ),
    # The audit read API (issue 16, item 2).
    ("retention", "ListProcessingLog"): lambda w: retention_pb2.ListProcessingLogRequest(
        tenant=w.tenant, subject_id=w.subject
    ),
    ("retention", "ListAuditTrail"): lambda w: retention_pb2.ListAuditTrailRequest(tenant=w.tenant),
    # The summary and the export's other categories (issue 16, items 3 and 7).
    ("retention", "DescribeHoldings"): lambda w: retention_pb2.DescribeHoldingsRequest(
        tenant=w.tenant, subject_id=w.subject
    ),
    ("ingest", "ExportFaceTemplates"): lambda w: ingest_pb2.ExportFaceTemplatesRequest(
        tenant=w.tenant, subject_id=w.subject
    ),
    ("trainer", "ExportModels"): lambda w: trainer_pb2.ExportModelsRequest(
        tenant=w.tenant, subject_id=w.subject
    ),
    # The tenant's usage against its quotas (issue 18, item 1): tenant-wide tokens with `usage:read` only.
    ("trainer", "GetTrainingUsage"): lambda w: trainer_pb2.GetTrainingUsageRequest(tenant=w.tenant),
    ("renderer", "GetRenderUsage"): lambda w: renderer_pb2.GetRenderUsageRequest(tenant=w.tenant),
}
METHODS = sorted(REQUESTS)
#: Who may call what, by certificate (part 2 of the issue): a method the gateway may not call at all is
#: refused before any token is looked at.
CALLERS = {**RETENTION_CALLERS, **INGEST_CALLERS, **TRAINER_CALLERS, **RENDERER_CALLERS}


def gateway_may_call(service: str, method: str) -> bool:
    return "gateway" in CALLERS[f"/{SERVICES[service][0].full_name}/{method}"]


def test_every_method_of_every_service_is_classified() -> None:
    """From the descriptors: a method without a token rule, or without a request here, fails this."""
    described = {
        (service, method.name)
        for service, (descriptor, _, _) in SERVICES.items()
        for method in descriptor.methods
    }
    assert described == set(REQUESTS), "classify the new method here and in its service's method_rules"
    for service, (descriptor, _, rules) in SERVICES.items():
        assert set(rules) == {method.name for method in descriptor.methods}, service
    data_bearing = {(s, m) for s, m in METHODS if SERVICES[s][2][m].data_bearing}
    assert {
        ("ingest", "ExportPhotos"),
        ("renderer", "FetchImage"),
        ("retention", "ListSubjects"),
    } <= data_bearing
    assert {("retention", "EraseSubject"), ("retention", "GetSubject")} <= data_bearing
    assert set(METHODS) - data_bearing == {
        ("renderer", "ListStyles"),
        ("retention", "GetReceiptKeys"),
        ("retention", "Sweep"),
    }, "only the catalog, the public receipt keys and the operator's sweep need no user token"


class Calls:
    """Channels to the four services with the gateway's certificate; the token is the test's to choose."""

    def __init__(self, stack: DevStack) -> None:
        self.caller = CallerToken(stack.jwt_secret)
        tls = ClientTls(stack.tls_dir("gateway"))
        self.channels = {
            name: tls.channel(stack.services[name].address, name, interceptors=self.caller.interceptors())
            for name in SERVICES
        }
        self.stubs = {name: SERVICES[name][1](channel) for name, channel in self.channels.items()}

    async def call(self, service: str, method: str, request: Any) -> list[Message]:
        """Every message the call answers with (raises the call's error)."""
        descriptor = SERVICES[service][0].methods_by_name[method]
        invoke = getattr(self.stubs[service], method)
        if descriptor.server_streaming:
            return [message async for message in invoke(request, timeout=30)]
        return [await invoke(request, timeout=30)]

    async def refused(self, service: str, method: str, request: Any, world: World) -> grpc.StatusCode:
        """The status a call is refused with, after checking it gave nothing and names nothing."""
        received: list[Message] = []
        descriptor = SERVICES[service][0].methods_by_name[method]
        invoke = getattr(self.stubs[service], method)
        try:
            if descriptor.server_streaming:
                async for message in invoke(request, timeout=30):
                    received.append(message)
            else:
                received.append(await invoke(request, timeout=30))
        except grpc.aio.AioRpcError as error:
            assert received == [], f"{service}.{method} streamed data before refusing"
            details = f"{error.details()} {error.trailing_metadata()}"
            for value in world.ids():
                assert value not in details, (service, method, value)
            return error.code()
        raise AssertionError(f"{service}.{method} answered: {received!r:.300}")

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self.channels.values()))


@pytest.fixture
async def calls(stack: DevStack) -> AsyncIterator[Calls]:
    made = Calls(stack)
    try:
        yield made
    finally:
        await made.close()


def _expired(stack: DevStack, tenant: str) -> str:
    return mint_dev_token(stack.jwt_secret, tenant, ALL_SCOPES, ttl_seconds=-3600)


def _forged(stack: DevStack, tenant: str) -> str:
    return mint_dev_token("not-" + stack.jwt_secret, tenant, ALL_SCOPES)


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s}.{m}" for s, m in METHODS])
async def test_every_data_bearing_method_refuses_every_wrong_token(
    stack: DevStack, world: World, calls: Calls, service: str, method: str
) -> None:
    rule = SERVICES[service][2][method]
    request = REQUESTS[(service, method)]
    if not rule.data_bearing:
        return  # the next test covers them
    caller = calls.caller
    kinds: dict[str, tuple[Callable[[], object], set[grpc.StatusCode]]] = {
        "no token": (caller.anonymous, {grpc.StatusCode.UNAUTHENTICATED}),
        "expired": (
            lambda: setattr(caller, "token", _expired(stack, world.tenant)),
            {grpc.StatusCode.UNAUTHENTICATED},
        ),
        "forged": (
            lambda: setattr(caller, "token", _forged(stack, world.tenant)),
            {grpc.StatusCode.UNAUTHENTICATED},
        ),
        "other tenant": (
            lambda: caller.act_as(f"zt-other-{uuid.uuid4().hex[:6]}"),
            {grpc.StatusCode.PERMISSION_DENIED},
        ),
    }
    # An end user's looks are the tenant's, not a person's data: their own tenant's end users may read them.
    if not (rule.binding is Binding.TENANT and rule.end_user):
        kinds["another subject's end user"] = (
            lambda: caller.act_as(world.tenant, subject=world.other_subject),
            {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND},
        )
    if rule.binding in (Binding.SUBJECT, Binding.TENANT_WIDE):
        kinds["no sub, no tenant:all"] = (
            lambda: caller.act_as(world.tenant, scopes=[s for s in ALL_SCOPES if s != TENANT_WIDE_SCOPE]),
            {grpc.StatusCode.PERMISSION_DENIED},
        )
    for label, (choose_token, expected) in kinds.items():
        if not gateway_may_call(service, method):
            expected = {grpc.StatusCode.PERMISSION_DENIED}  # by the caller table, whatever the token
        choose_token()
        code = await calls.refused(service, method, request(world), world)
        assert code in expected, (service, method, label, code)
        assert code in REFUSED


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s}.{m}" for s, m in METHODS])
async def test_methods_that_need_no_token_hold_no_ones_data(
    world: World, calls: Calls, service: str, method: str
) -> None:
    if SERVICES[service][2][method].data_bearing:
        return
    calls.caller.anonymous()
    request = REQUESTS[(service, method)](world)
    if (service, method) == ("retention", "Sweep"):
        # The operator's sweep is no gateway's to call: the caller table refuses it before anything runs.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await calls.call(service, method, request)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        return
    answers = await calls.call(service, method, request)
    for value in world.ids():
        assert all(value not in str(answer) for answer in answers), (service, method, value)


def _exported_photo_ids(parts: list[Any]) -> set[str]:
    """The photos of an ExportPhotos stream (the world's two uploads go to ingest at once: either may be
    the first one stored, so the export's order says nothing about which is `world.photo`)."""
    return {part.photo.photo_id for part in parts if part.HasField("photo")}


async def test_the_rightful_tokens_still_get_the_data(world: World, calls: Calls) -> None:
    """The refusals above are not services refusing everyone: the tenant's token, and the person's own."""
    for token in ({}, {"subject": world.subject}):
        calls.caller.act_as(world.tenant, **token)
        image = await calls.call("renderer", "FetchImage", REQUESTS[("renderer", "FetchImage")](world))
        assert image[0].info.id == world.image
        assert sum(len(part.chunk) for part in image) > 1000
        exported = await calls.call("ingest", "ExportPhotos", REQUESTS[("ingest", "ExportPhotos")](world))
        assert world.photo in _exported_photo_ids(exported)
        training = await calls.call("trainer", "GetTraining", REQUESTS[("trainer", "GetTraining")](world))
        assert training[0].training.subject_id == world.subject
    calls.caller.act_as(world.tenant)
    listed = await calls.call("retention", "ListSubjects", REQUESTS[("retention", "ListSubjects")](world))
    assert world.subject in {subject.id for subject in listed[0].subjects}


# ------------------------------------------------------------------------------------------ forged records


@pytest.fixture(scope="module")
def attacker(stack: DevStack) -> tuple[str, str]:
    """Another tenant, with a subject of its own: (tenant, subject)."""
    tenant = f"zt-attacker-{uuid.uuid4().hex[:6]}"
    headers = {"Authorization": f"Bearer {stack.mint_token(tenant=tenant)}"}
    consent = {"consent": {"purpose": "headshots", "policy_version": "2026-01"}}
    opened = httpx.post(f"{stack.gateway_url}/v1/subjects", json=consent, headers=headers, timeout=30)
    assert opened.status_code == 201, opened.text
    return tenant, str(opened.json()["id"])


async def _forge(stack: DevStack, bucket: str, key: str, record: Message) -> None:
    """Writes `record` at `key` with NATS admin rights (what no service's own code would write)."""
    connection = await nats.connect(stack.infra.endpoints.nats_url)
    try:
        kv = await connection.jetstream().key_value(bucket)
        await kv.put(key, record.SerializeToString())
    finally:
        await connection.close()


async def test_a_forged_render_record_gets_another_tenants_image_decrypted_for_no_one(
    stack: DevStack, world: World, attacker: tuple[str, str], calls: Calls
) -> None:
    """The known attack: a `renders` record in the attacker's keyspace naming the victim's render, then
    FetchImage with a valid token of the attacker's tenant. The renderer names the object and the key from
    the request and a record that is what its key says, never from the record's free fields."""
    tenant, _ = attacker
    victim_render = renderer_pb2.Render(
        tenant=world.tenant,
        id=world.render,
        subject_id=world.subject,
        training_id=world.training,
        status=common_pb2.JOB_STATUS_SUCCEEDED,
        images=[renderer_pb2.RenderedImage(id=world.image, content_type="image/png")],
    )
    # 1. The victim's record copied under a key of the attacker's (its tenant and id are the victim's).
    copied = new_id("ren")
    await _forge(stack, "renders", f"{tenant}.{copied}", victim_render)
    # 2. One that agrees with its key but names the victim's subject and render (the attacker's own tenant).
    relabelled = renderer_pb2.Render()
    relabelled.CopyFrom(victim_render)
    relabelled.tenant = tenant
    await _forge(stack, "renders", f"{tenant}.{world.render}", relabelled)

    calls.caller.act_as(tenant)  # a valid tenant-wide token of the attacker's tenant
    for render_id in (copied, world.render):
        request = renderer_pb2.FetchImageRequest(tenant=tenant, render_id=render_id, image_id=world.image)
        assert await calls.refused("renderer", "FetchImage", request, world) == grpc.StatusCode.NOT_FOUND
        async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as client:
            response = await client.get(
                f"/v1/renders/{render_id}/images/{world.image}",
                headers={"Authorization": f"Bearer {calls.caller.token}"},
            )
        assert response.status_code == 404, response.text
        assert b"\x89PNG" not in response.content
    calls.caller.act_as(world.tenant)  # the image is there: the refusals are not an absence
    image = await calls.call("renderer", "FetchImage", REQUESTS[("renderer", "FetchImage")](world))
    assert sum(len(part.chunk) for part in image) > 1000


async def test_a_forged_photo_record_exports_no_one_elses_photo(
    stack: DevStack, world: World, attacker: tuple[str, str], calls: Calls
) -> None:
    tenant, own_subject = attacker
    victim_photo = ingest_pb2.Photo(
        id=world.photo, tenant=world.tenant, subject_id=world.subject, status=ingest_pb2.PHOTO_STATUS_ACCEPTED
    )
    # The victim's record under the attacker's subject; then one that agrees with its key (the attacker's
    # tenant and subject) but names the victim's photo.
    relabelled = ingest_pb2.Photo()
    relabelled.CopyFrom(victim_photo)
    relabelled.tenant, relabelled.subject_id = tenant, own_subject
    calls.caller.act_as(tenant)
    request = ingest_pb2.ExportPhotosRequest(tenant=tenant, subject_id=own_subject)
    for forged in (victim_photo, relabelled):
        await _forge(stack, "photos", f"{tenant}.{own_subject}.{world.photo}", forged)
        assert await calls.call("ingest", "ExportPhotos", request) == [], "nothing of the victim's photo"
    calls.caller.act_as(world.tenant)
    exported = await calls.call("ingest", "ExportPhotos", REQUESTS[("ingest", "ExportPhotos")](world))
    assert world.photo in _exported_photo_ids(exported), "the photo is there: the refusal is not an absence"


async def test_a_forged_erasure_record_gets_no_receipt_signed(
    stack: DevStack, world: World, attacker: tuple[str, str], calls: Calls
) -> None:
    """An erasure record naming the victim's subject key under the attacker's tenant is not confirmed by
    any subject record: retention neither serves it nor signs a receipt for it (nor, after a restart,
    destroys the key it names: `services/retention/tests/test_retention_forged_records.py`)."""
    tenant, _ = attacker
    forged_id = new_id("era")
    forged = retention_pb2.Erasure(
        id=forged_id,
        tenant=tenant,
        key_name=f"likeness-subject-{world.subject}",
        status=retention_pb2.ERASURE_STATUS_COMPLETED,
    )
    await _forge(stack, "erasures", f"{tenant}.{forged_id}", forged)
    calls.caller.act_as(tenant)
    for method, request in (
        ("GetErasure", retention_pb2.GetErasureRequest(tenant=tenant, erasure_id=forged_id)),
        ("GetErasureReceipt", retention_pb2.GetErasureReceiptRequest(tenant=tenant, erasure_id=forged_id)),
    ):
        assert await calls.refused("retention", method, request, world) == grpc.StatusCode.NOT_FOUND
    connection = await nats.connect(stack.infra.endpoints.nats_url)
    try:
        receipts = await connection.jetstream().key_value("receipts")
        with pytest.raises(nats.js.errors.KeyNotFoundError):
            await receipts.get(f"{tenant}.{forged_id}")
    finally:
        await connection.close()
    calls.caller.act_as(world.tenant, subject=world.subject)
    subject = await calls.call("retention", "GetSubject", REQUESTS[("retention", "GetSubject")](world))
    assert subject[0].subject.status == retention_pb2.SUBJECT_STATUS_ACTIVE, "the victim was not erased"
