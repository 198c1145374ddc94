"""The audit trail: every access to and deletion of a subject's data is recorded on LIKENESS_AUDIT, and
nothing in it names a person; metrics count deletions without ids."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
import nats.js.errors
import pytest
from prometheus_client import REGISTRY

from likeness import ids
from likeness.audit import AuditTrail
from likeness.bus import AUDIT_STREAM, audit_nats_subject
from likeness.method_access import acting_as
from likeness.user_tokens import Principal
from likeness.v1 import events_pb2, retention_pb2

ERASURE_TRAIL = ("subject.opened", "subject.erase_requested", "subject.key_destroyed")
AFTER_PURGE = ("subject.erased", "receipt.issued")


def test_the_trail_refuses_anything_but_ids_and_words() -> None:
    trail = AuditTrail(bus=None, pseudonym_secret="s", actor="retention")  # type: ignore[arg-type]
    subject = ids.new_id("sub")
    record = trail.build("acme", "subject.opened", subject, "ok", ids.new_id("era"))
    assert subject not in record.SerializeToString().decode("latin-1")
    for bad in (
        lambda: trail.build("acme", "subject.opened", subject, "ok", "employee-4711"),
        lambda: trail.build("acme", "subject.opened", "Jane Doe", "ok"),
        lambda: trail.build("acme", "read Jane's photos", subject, "ok"),
        lambda: trail.build("Not A Tenant", "subject.opened", subject, "ok"),
    ):
        with pytest.raises(ValueError, match="audit"):
            bad()


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_an_erasure_leaves_an_audit_trail_and_metrics_without_ids(instances: Any) -> None:
    servicer = await instances.new()
    tenant = instances.tenant
    sid = (await instances.open_subject(servicer, tenant)).id
    await instances.put_object(servicer, tenant, sid, f"renders/{ids.new_id('ren')}/img", b"x" * 100)
    with acting_as(Principal(tenant=tenant, scopes=frozenset({"subjects:read"}), subject=sid)):  # the person
        # A status read: it writes no record (there is no `subject.read` any more).
        await servicer.GetSubject(retention_pb2.GetSubjectRequest(tenant=tenant, subject_id=sid), None)
    render_labels = {"kind": "render", "reason": "erasure"}
    deleted_before = _sample("likeness_retention_deleted_objects_total", render_labels)
    latency_before = _sample("likeness_retention_erasure_seconds_count", {"stage": "key_destroyed"})

    erasure = (await servicer.eraser.request(tenant, sid, "request")).erasure
    assert erasure is not None
    await instances.wait_erased(servicer, tenant, erasure.id)

    js = servicer.platform.bus.js
    pseudonym = servicer.audit.subject_hmac(tenant, sid)
    for action in ERASURE_TRAIL + AFTER_PURGE:
        message = await js.get_last_msg(AUDIT_STREAM, audit_nats_subject(tenant, pseudonym, action))
        record = events_pb2.AuditRecord.FromString(message.data)
        assert record.action == action
        assert record.subject_hmac == pseudonym
        assert record.actor == "retention"
        assert record.principal == "service:retention" or action == "subject.opened"
        assert record.purpose == ("headshots" if action == "subject.opened" else "erasure")
        assert sid.encode() not in message.data, f"{action} names the subject in clear"
    with pytest.raises(nats.js.errors.NotFoundError):  # the status read above wrote nothing
        await js.get_last_msg(AUDIT_STREAM, audit_nats_subject(tenant, pseudonym, "subject.read"))

    assert _sample("likeness_retention_deleted_objects_total", render_labels) == deleted_before + 1
    assert (
        _sample("likeness_retention_erasure_seconds_count", {"stage": "key_destroyed"}) == latency_before + 1
    )
    exposed = "\n".join(
        f"{sample.name}{sample.labels}"
        for metric in REGISTRY.collect()
        if metric.name.startswith("likeness_retention")
        for sample in metric.samples
    )
    assert "sub_" not in exposed
    assert tenant not in exposed, "metrics carry no tenants or ids"


class _Context:
    """What `likeness.rpc_errors.abort` uses of a servicer context."""

    def set_trailing_metadata(self, metadata: Any) -> None:
        return None

    async def abort(self, status: grpc.StatusCode, message: str) -> NoReturn:
        raise PermissionError(status.name)


async def test_a_token_refused_on_an_existing_subject_leaves_access_denied_on_its_log(instances: Any) -> None:
    servicer = await instances.new()
    tenant = instances.tenant
    sid = (await instances.open_subject(servicer, tenant)).id
    someone_else = Principal(tenant=tenant, scopes=frozenset({"subjects:read"}), subject=ids.new_id("sub"))
    with acting_as(someone_else), pytest.raises(PermissionError, match="PERMISSION_DENIED"):
        await servicer.GetSubject(retention_pb2.GetSubjectRequest(tenant=tenant, subject_id=sid), _Context())
    js = servicer.platform.bus.js
    pseudonym = servicer.audit.subject_hmac(tenant, sid)
    message = await js.get_last_msg(AUDIT_STREAM, audit_nats_subject(tenant, pseudonym, "access.denied"))
    record = events_pb2.AuditRecord.FromString(message.data)
    assert (record.principal, record.outcome) == ("subject", "denied")
    # A subject that does not exist gets no record (there is nobody to tell).
    nobody = ids.new_id("sub")
    with acting_as(someone_else), pytest.raises(PermissionError):
        await servicer.GetSubject(
            retention_pb2.GetSubjectRequest(tenant=tenant, subject_id=nobody), _Context()
        )
    with pytest.raises(nats.js.errors.NotFoundError):
        await js.get_last_msg(
            AUDIT_STREAM,
            audit_nats_subject(tenant, servicer.audit.subject_hmac(tenant, nobody), "access.denied"),
        )
