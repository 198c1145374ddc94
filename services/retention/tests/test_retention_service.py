"""The retention service in-process against the real NATS, S3 and OpenBao servers.

Calls go over gRPC through the user-token interceptor, as in a deployment: each test says whose token its
calls carry (`caller.act_as`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from likeness import receipts
from likeness.grpc_tls import secure_channel, static_server_credentials
from likeness.grpc_user_tokens import user_token_interceptor
from likeness.object_names import photo_key
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.v1 import retention_pb2, retention_pb2_grpc
from likeness.vault_transit import SubjectKeys
from likeness_dev.dev_pki import DevCertificateAuthority
from likeness_dev.infra import Infra
from likeness_dev.tokens import CallerToken
from retention.config import RetentionSettings
from retention.records import RetentionRecords
from retention.service import RetentionServicer

ES = retention_pb2.ErasureStatus


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


TOKEN_SECRET = "retention-service-tests-token-secret-0123456789"


@pytest.fixture
def caller() -> CallerToken:
    """Whose token the test's calls carry: tenant acme's backend (every scope, `tenant:all`) unless told."""
    token = CallerToken(TOKEN_SECRET)
    token.act_as("acme")
    return token


@pytest.fixture
async def service(
    infra: Infra, caller: CallerToken, dev_ca: DevCertificateAuthority
) -> AsyncIterator[tuple[retention_pb2_grpc.RetentionServiceStub, Platform, Any]]:
    env = infra.endpoints.as_env()
    values = {key.removeprefix("LIKENESS_").lower(): value for key, value in env.items()}
    settings = RetentionSettings.model_validate(
        {
            **values,
            "jwt_dev_secret": TOKEN_SECRET,
            "erasure_retry_initial_seconds": 0.2,
            "erasure_retry_max_seconds": 0.5,
        }
    )
    platform = await Platform.connect(settings, "retention-test")
    servicer = RetentionServicer(platform, await RetentionRecords.open(platform.bus), settings)
    server = grpc.aio.server(interceptors=[user_token_interceptor(settings)])
    retention_pb2_grpc.add_RetentionServiceServicer_to_server(servicer, server)
    port = _free_port()
    server.add_secure_port(f"127.0.0.1:{port}", static_server_credentials(dev_ca.issue("retention").material))
    await server.start()
    channel = secure_channel(
        f"127.0.0.1:{port}", dev_ca.issue("gateway").material, "retention", interceptors=caller.interceptors()
    )
    yield retention_pb2_grpc.RetentionServiceStub(channel), platform, servicer
    await channel.close()
    await server.stop(0)
    await platform.close()


CONSENT = retention_pb2.Consent(purpose="headshots", policy_version="2026-01")


async def _erasure(stub: retention_pb2_grpc.RetentionServiceStub, erasure_id: str) -> retention_pb2.Erasure:
    request = retention_pb2.GetErasureRequest(tenant="acme", erasure_id=erasure_id)
    return (await stub.GetErasure(request)).erasure


async def test_open_creates_the_key_and_hides_the_external_ref(service: Any) -> None:
    stub, platform, _ = service
    request = retention_pb2.OpenSubjectRequest(tenant="acme", external_ref="employee-4711", consent=CONSENT)
    subject = (await stub.OpenSubject(request)).subject
    assert subject.status == retention_pb2.SUBJECT_STATUS_ACTIVE
    assert subject.consent.given_at.seconds > 0
    assert subject.delete_by.seconds > subject.created_at.seconds
    assert await asyncio.to_thread(platform.keys.exists, subject.id)
    stored = (await platform.bus.kv("subjects")).get(f"acme.{subject.id}")
    raw = (await stored).value
    assert b"employee-4711" not in raw, "the tenant's reference is kept only as a keyed HMAC"
    got = (
        await stub.GetSubject(retention_pb2.GetSubjectRequest(tenant="acme", subject_id=subject.id))
    ).subject
    assert got.external_ref_hmac == "", "the HMAC stays inside retention"


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        # No token names an invalid tenant (it is refused), so a request naming one is not the token's.
        (
            retention_pb2.OpenSubjectRequest(tenant="Bad Tenant!", consent=CONSENT),
            grpc.StatusCode.PERMISSION_DENIED,
            "wrong_tenant",
        ),
        (
            retention_pb2.OpenSubjectRequest(tenant="acme"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_consent",
        ),
        # The consent given at opening becomes the first grant: its purpose is one of the fixed list.
        (
            retention_pb2.OpenSubjectRequest(
                tenant="acme",
                consent=retention_pb2.Consent(purpose="professional headshots", policy_version="2026-01"),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_purpose",
        ),
    ],
)
async def test_open_refuses_bad_input(
    service: Any, request_: retention_pb2.OpenSubjectRequest, status: grpc.StatusCode, code: str
) -> None:
    stub, _, _ = service
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.OpenSubject(request_)
    assert caught.value.code() == status
    assert ("likeness-error-code", code) in tuple(caught.value.trailing_metadata() or ())


async def test_another_tenant_cannot_see_the_subject(service: Any, caller: CallerToken) -> None:
    stub, _, _ = service
    subject = (
        await stub.OpenSubject(retention_pb2.OpenSubjectRequest(tenant="acme", consent=CONSENT))
    ).subject
    caller.act_as("other")  # a valid token of another tenant, asking in its own name
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetSubject(retention_pb2.GetSubjectRequest(tenant="other", subject_id=subject.id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_erasure_waits_for_vault_and_never_reports_done_early(service: Any, infra: Infra) -> None:
    stub, platform, _ = service
    subject = (
        await stub.OpenSubject(retention_pb2.OpenSubjectRequest(tenant="acme", consent=CONSENT))
    ).subject
    ref = ObjectRef("acme", subject.id, photo_key("acme", subject.id, "pho_x"), "photo")
    await asyncio.to_thread(platform.sealed.put, ref, b"pixels")

    infra.stop_vault()
    try:
        request = retention_pb2.EraseSubjectRequest(tenant="acme", subject_id=subject.id)
        erasure = (await stub.EraseSubject(request)).erasure
        again = (await stub.EraseSubject(request)).erasure
        assert again.id == erasure.id, "erasing twice is one erasure"
        for _ in range(50):
            erasure = await _erasure(stub, erasure.id)
            if erasure.attempts >= 2:
                break
            await asyncio.sleep(0.1)
        assert erasure.status == ES.ERASURE_STATUS_PENDING, "nothing is done before the key is destroyed"
        assert erasure.attempts >= 2
        assert "VaultUnavailable" in erasure.last_error
        assert await asyncio.to_thread(platform.store.list_current, f"t/acme/s/{subject.id}/"), (
            "objects untouched"
        )
    finally:
        infra.start_vault()

    for _ in range(100):
        erasure = await _erasure(stub, erasure.id)
        if erasure.status == ES.ERASURE_STATUS_COMPLETED:
            break
        await asyncio.sleep(0.1)
    assert erasure.status == ES.ERASURE_STATUS_COMPLETED
    assert erasure.key_destroyed_at.seconds > 0
    assert erasure.objects_deleted == 1
    assert erasure.key_name == "", "once completed, the record no longer names the subject's key"
    assert len(erasure.subject_commitment) == 64
    assert erasure.backups_expire_by.seconds > erasure.key_destroyed_at.seconds
    keys = SubjectKeys.from_settings(platform.settings)
    assert not await asyncio.to_thread(keys.exists, subject.id)
    record = (
        await stub.GetSubject(retention_pb2.GetSubjectRequest(tenant="acme", subject_id=subject.id))
    ).subject
    assert record.status == retention_pb2.SUBJECT_STATUS_ERASED
    assert not record.HasField("consent"), "the tombstone keeps ids and status only"


async def test_erasure_with_s3_down_destroys_the_key_at_once_then_waits_for_s3(
    service: Any, infra: Infra
) -> None:
    stub, platform, servicer = service
    subject = (
        await stub.OpenSubject(retention_pb2.OpenSubjectRequest(tenant="acme", consent=CONSENT))
    ).subject
    prefix = f"t/acme/s/{subject.id}/"
    ref = ObjectRef("acme", subject.id, photo_key("acme", subject.id, "pho_x"), "photo")
    await asyncio.to_thread(platform.sealed.put, ref, b"pixels")

    infra.stop_s3()
    try:
        request = retention_pb2.EraseSubjectRequest(tenant="acme", subject_id=subject.id)
        erasure = (await stub.EraseSubject(request)).erasure
        for _ in range(300):
            erasure = await _erasure(stub, erasure.id)
            if erasure.attempts >= 2:
                break
            await asyncio.sleep(0.1)
        assert erasure.status == ES.ERASURE_STATUS_KEY_DESTROYED, "the key goes first, S3 or not"
        assert erasure.key_destroyed_at.seconds > 0
        assert erasure.attempts >= 2
        assert "Store" in erasure.last_error, erasure.last_error
        assert not await asyncio.to_thread(platform.keys.exists, subject.id)
        assert await servicer.receipt("acme", erasure.id) is None, "no receipt before the purge is done"
    finally:
        infra.start_s3()

    for _ in range(300):
        erasure = await _erasure(stub, erasure.id)
        if erasure.status == ES.ERASURE_STATUS_COMPLETED:
            break
        await asyncio.sleep(0.1)
    assert erasure.status == ES.ERASURE_STATUS_COMPLETED
    assert erasure.last_error == ""
    assert erasure.objects_deleted == 1
    assert await asyncio.to_thread(platform.store.list_versions, prefix) == []
    await servicer.eraser.wait_all()
    receipt = await servicer.receipt("acme", erasure.id)
    assert receipt is not None
    facts = receipts.verify_receipt_text(
        receipt, receipts.load_public_keys(json.dumps(servicer.receipt_keys()))
    )
    assert facts["erasure_id"] == erasure.id
    assert facts["objects_deleted"] == 1


async def test_policy_and_receipt_rpcs(service: Any, caller: CallerToken) -> None:
    stub, _, _ = service
    tenant = f"pol{uuid.uuid4().hex[:8]}"
    caller.act_as(tenant)
    before = await stub.GetRetentionPolicy(retention_pb2.GetRetentionPolicyRequest(tenant=tenant))
    assert not before.tenant_specific
    assert before.hard_cap_days == 3 * 365
    assert before.text
    schedule = retention_pb2.RetentionSchedule(photos_days=7, photos_deleted_after_training=True)
    await stub.SetRetentionPolicy(retention_pb2.SetRetentionPolicyRequest(tenant=tenant, schedule=schedule))
    after = await stub.GetRetentionPolicy(retention_pb2.GetRetentionPolicyRequest(tenant=tenant))
    assert after.tenant_specific
    assert after.schedule.photos_days == 7
    assert after.schedule.photos_deleted_after_training
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await stub.GetRetentionPolicy(retention_pb2.GetRetentionPolicyRequest(tenant="Not A Tenant"))
    assert invalid.value.code() == grpc.StatusCode.PERMISSION_DENIED, "no token is of an invalid tenant"
    keys = json.loads((await stub.GetReceiptKeys(retention_pb2.GetReceiptKeysRequest())).jwks_json)
    assert keys["keys"][0]["kty"] == "OKP"
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetErasureReceipt(
            retention_pb2.GetErasureReceiptRequest(tenant=tenant, erasure_id="era_00000000000000000000000000")
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
