"""Rectification of a subject's record through the real stack (issue 16, item 3): `PATCH /v1/subjects/{id}`.

What a person (or their tenant) may correct is the tenant's reference for them, which retention keeps only
as its keyed HMAC: the stored HMAC follows each correction (and is the same HMAC again for the same
reference), the reference itself is never stored, `null` forgets it, each change is audited once as
`subject.rectified` with its principal and purpose, and nothing else of the record (tenant, status,
deadlines, consent) can be changed through it. Another person's token gets 404 and changes nothing.
"""

from __future__ import annotations

import asyncio

import nats
import pytest

from likeness import ids
from likeness.provisioning import AUDIT_STREAM
from likeness.v1 import events_pb2, retention_pb2
from likeness_dev.journey import GatewayClient
from likeness_dev.stack import DevStack
from likeness_dev.tokens import DEV_TENANT

TENANT = DEV_TENANT
RECTIFIED = f"audit.{TENANT}.*.subject_rectified"


def stored_record(stack: DevStack, subject_id: str) -> bytes:
    """The subject's record as retention keeps it (root access to its KV bucket)."""

    async def read() -> bytes:
        nc = await nats.connect(stack.infra.endpoints.nats_url)
        try:
            kv = await nc.jetstream().key_value("subjects")
            return bytes((await kv.get(f"{TENANT}.{subject_id}")).value or b"")
        finally:
            await nc.close()

    return asyncio.run(read())


def ref_hmac(stack: DevStack, subject_id: str) -> str:
    record = retention_pb2.Subject()
    record.ParseFromString(stored_record(stack, subject_id))
    return record.external_ref_hmac


def rectifications(stack: DevStack) -> list[events_pb2.AuditRecord]:
    """Every `subject.rectified` record of the tenant in the audit stream, oldest first."""

    async def read() -> list[events_pb2.AuditRecord]:
        nc = await nats.connect(stack.infra.endpoints.nats_url)
        try:
            js = nc.jetstream()
            consumer = await js.subscribe(RECTIFIED, stream=AUDIT_STREAM, ordered_consumer=True)
            found = []
            try:
                while True:
                    message = await consumer.next_msg(timeout=1.0)
                    record = events_pb2.AuditRecord()
                    record.ParseFromString(message.data)
                    found.append(record)
            except nats.errors.TimeoutError:
                return found
            finally:
                await consumer.unsubscribe()
        finally:
            await nc.close()

    return asyncio.run(read())


@pytest.fixture
def subject_id(gateway: GatewayClient) -> str:
    body = {"consent": {"purpose": "headshots", "policy_version": "1"}, "external_ref": "crm-4711"}
    return str(gateway.json("POST", "/v1/subjects", expect=(201,), json=body)["id"])


def test_the_reference_is_rectified_as_its_keyed_hmac_and_audited_once_per_change(
    stack: DevStack, gateway: GatewayClient, subject_id: str
) -> None:
    path = f"/v1/subjects/{subject_id}"
    first = ref_hmac(stack, subject_id)
    assert first, "the reference given at opening is kept as its HMAC"
    audited = len(rectifications(stack))

    answer = gateway.json("PATCH", path, json={"external_ref": "crm-4712"})
    assert answer["id"] == subject_id
    assert answer["status"] == "active"
    assert "external_ref" not in answer
    assert "external_ref_hmac" not in answer
    second = ref_hmac(stack, subject_id)
    assert second not in ("", first)
    assert b"crm-4712" not in stored_record(stack, subject_id), "never stored in clear"

    gateway.json("PATCH", path, json={"external_ref": "crm-4711"})
    assert ref_hmac(stack, subject_id) == first, "the same reference is the same keyed HMAC"
    gateway.json("PATCH", path, json={"external_ref": "crm-4711"})  # no change: nothing to audit

    gateway.json("PATCH", path, json={"external_ref": None})
    assert ref_hmac(stack, subject_id) == "", "null forgets the reference"

    records = rectifications(stack)[audited:]
    assert len(records) == 3, "one record per change, none for the call that changed nothing"
    for record in records:
        assert record.actor == "retention"
        assert record.purpose == "rectification"
        assert record.principal.startswith("tenant")
        assert record.subject_hmac
        assert subject_id not in record.SerializeToString().decode("latin-1")


def test_nothing_else_of_the_record_can_be_changed_through_it(
    stack: DevStack, gateway: GatewayClient, subject_id: str
) -> None:
    path = f"/v1/subjects/{subject_id}"
    before = stored_record(stack, subject_id)
    for body in (
        {"external_ref": "crm-1", "status": "erased"},
        {"external_ref": "crm-1", "tenant": "other"},
        {"external_ref": "crm-1", "delete_by": "2099-01-01T00:00:00Z"},
        {"external_ref": "crm-1", "consent": {"purpose": "instant", "policy_version": "2"}},
        {"status": "erased"},
        {},
    ):
        refused = gateway.call("PATCH", path, expect=(422,), json=body)
        assert refused.json()["error"]["code"] == "invalid_request", body
    assert stored_record(stack, subject_id) == before, "a refused call changed nothing"


def test_the_person_rectifies_their_own_record_and_nobody_else_s(
    stack: DevStack, gateway: GatewayClient, subject_id: str
) -> None:
    path = f"/v1/subjects/{subject_id}"
    before = ref_hmac(stack, subject_id)
    stranger = {"Authorization": f"Bearer {stack.mint_token(subject=ids.new_id('sub'))}"}
    gateway.call("PATCH", path, expect=(404,), headers=stranger, json={"external_ref": "crm-9"})
    assert ref_hmac(stack, subject_id) == before, "another person's token changed nothing"

    audited = len(rectifications(stack))
    own = {"Authorization": f"Bearer {stack.mint_token(subject=subject_id)}"}
    gateway.json("PATCH", path, headers=own, json={"external_ref": "crm-9"})
    assert ref_hmac(stack, subject_id) not in ("", before)
    [record] = rectifications(stack)[audited:]
    assert record.principal == "subject"
