"""The audit trail: every access to and deletion of a subject's data is recorded on LIKENESS_AUDIT, and
nothing in it names a person; metrics count deletions without ids."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from likeness import ids
from likeness.audit import AuditTrail
from likeness.bus import AUDIT_STREAM, audit_nats_subject
from likeness.method_access import acting_as
from likeness.user_tokens import Principal
from likeness.v1 import events_pb2, retention_pb2

ERASURE_TRAIL = ("subject.opened", "subject.read", "subject.erase_requested", "subject.key_destroyed")
AFTER_PURGE = ("subject.erased", "receipt.issued")


def test_the_trail_refuses_anything_but_ids_and_words() -> None:
    trail = AuditTrail(bus=None, hmac_secret="s", actor="retention")  # type: ignore[arg-type]
    subject = ids.new_id("sub")
    record = trail.build("acme", "subject.read", subject, "ok", ids.new_id("era"))
    assert subject not in record.SerializeToString().decode("latin-1")
    for bad in (
        lambda: trail.build("acme", "subject.read", subject, "ok", "employee-4711"),
        lambda: trail.build("acme", "subject.read", "Jane Doe", "ok"),
        lambda: trail.build("acme", "read Jane's photos", subject, "ok"),
        lambda: trail.build("Not A Tenant", "subject.read", subject, "ok"),
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
        await servicer.GetSubject(retention_pb2.GetSubjectRequest(tenant=tenant, subject_id=sid), None)
    render_labels = {"kind": "render", "reason": "erasure"}
    deleted_before = _sample("likeness_retention_deleted_objects_total", render_labels)
    latency_before = _sample("likeness_retention_erasure_seconds_count", {"stage": "key_destroyed"})

    erasure = (await servicer.eraser.request(tenant, sid, "request")).erasure
    assert erasure is not None
    await instances.wait_erased(servicer, tenant, erasure.id)

    js = servicer.platform.bus.js
    for action in ERASURE_TRAIL + AFTER_PURGE:
        message = await js.get_last_msg(AUDIT_STREAM, audit_nats_subject(tenant, action.replace(".", "_")))
        record = events_pb2.AuditRecord.FromString(message.data)
        assert record.action == action
        assert record.subject_hmac == servicer.audit.subject_hmac(tenant, sid)
        assert record.actor == "retention"
        assert sid.encode() not in message.data, f"{action} names the subject in clear"

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
