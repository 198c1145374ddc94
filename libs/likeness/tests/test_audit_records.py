"""The audit record's checks (nothing personal fits in a principal, purpose or notice), the principal labels,
the NATS subject layout of a person's log, and who may publish which action."""

from __future__ import annotations

import pytest

from likeness import ids
from likeness.access_policies import nats_permissions
from likeness.audit import PURPOSES, AuditTrail, check_record_words, principal_label
from likeness.bus import audit_log_filter, audit_nats_subject
from likeness.consent import PURPOSES as CONSENT_PURPOSES
from likeness.provisioning import AUDIT_ACTIONS, CALL_DENIED_AUDIT, identity
from likeness.user_tokens import Principal


def trail() -> AuditTrail:
    return AuditTrail(bus=None, pseudonym_secret="pseudonyms", actor="trainer-worker")  # type: ignore[arg-type]


def test_principal_labels_say_who_acted_without_naming_anyone() -> None:
    person = Principal(tenant="acme", scopes=frozenset({"subjects:read"}), subject=ids.new_id("sub"))
    backend = Principal(tenant="acme", scopes=frozenset({"tenant:all"}), client="crm-sync")
    anonymous_backend = Principal(tenant="acme", scopes=frozenset({"tenant:all"}))
    by_mail = Principal(tenant="acme", scopes=frozenset({"tenant:all"}), client="jane.doe@example.com")
    assert principal_label(person, "ingest") == "subject"
    assert principal_label(backend, "ingest") == "tenant:crm-sync"
    assert principal_label(anonymous_backend, "ingest") == "tenant"
    assert principal_label(by_mail, "ingest") == "tenant", "a client id that could be an address is dropped"
    assert principal_label(None, "trainer-worker") == "service:trainer-worker"
    with pytest.raises(ValueError, match="service"):
        principal_label(None, "Jane Doe")


def test_principal_purpose_and_notice_have_fixed_shapes() -> None:
    check_record_words("subject", "headshots", "not_a_crypto_erase")
    check_record_words("tenant:crm-sync", "export", "")
    check_record_words("service:renderer-worker", "", "")
    for principal, purpose, notice in (
        ("jane.doe@example.com", "", ""),
        ("tenant:jane doe", "", ""),
        ("user:4711", "", ""),
        ("subject", "marketing", ""),
        ("subject", "headshots", "Jane asked for it"),
        ("subject", "", "employee-4711"),
    ):
        with pytest.raises(ValueError, match="audit"):
            check_record_words(principal, purpose, notice)
        with pytest.raises(ValueError, match="audit"):
            trail().build("acme", "photos.decrypted", ids.new_id("sub"), "ok", principal=principal,
                          purpose=purpose, notice=notice)  # fmt: skip


def test_the_audit_purposes_include_every_consent_purpose() -> None:
    """`likeness.audit` repeats the consent purposes (an import cycle): the two lists must agree."""
    assert set(CONSENT_PURPOSES) <= PURPOSES


def test_a_record_names_its_principal_purpose_and_the_persons_pseudonym() -> None:
    subject_id = ids.new_id("sub")
    record = trail().build(
        "acme", "photos.decrypted", subject_id, "ok", ids.new_id("trn"), purpose="headshots"
    )
    assert record.principal == "service:trainer-worker", "work without a token is the service's"
    assert record.purpose == "headshots"
    assert record.subject_hmac == trail().subject_hmac("acme", subject_id)
    other = AuditTrail(bus=None, pseudonym_secret="another", actor="ingest")  # type: ignore[arg-type]
    assert other.subject_hmac("acme", subject_id) != record.subject_hmac, "the pseudonym is keyed"
    assert subject_id.encode() not in record.SerializeToString()


def test_a_persons_log_is_one_filtered_subject() -> None:
    pseudonym = trail().subject_hmac("acme", ids.new_id("sub"))
    assert (
        audit_nats_subject("acme", pseudonym, "photos.decrypted")
        == f"audit.acme.{pseudonym}.photos_decrypted"
    )
    assert audit_log_filter("acme", pseudonym) == f"audit.acme.{pseudonym}.*"
    assert audit_log_filter("acme") == "audit.acme.*.*"
    assert audit_nats_subject("_mesh", "_", "call.denied") == CALL_DENIED_AUDIT


def test_each_identity_may_publish_only_its_own_audit_actions() -> None:
    writers = {action: name for name, actions in AUDIT_ACTIONS.items() for action in actions}
    assert len(writers) == sum(len(actions) for actions in AUDIT_ACTIONS.values()), "one writer per action"
    for name in (*AUDIT_ACTIONS, "gateway"):
        allowed = {s for s in nats_permissions(identity(name)).publish_allow if s.startswith("audit.")}
        own = {f"audit.*.*.{action.replace('.', '_')}" for action in AUDIT_ACTIONS.get(name, ())}
        assert allowed - {CALL_DENIED_AUDIT} == own, name
        assert "audit.>" not in allowed


def test_every_service_with_a_grpc_server_may_audit_its_refused_calls() -> None:
    """`CallAudit` publishes `audit._mesh._.call_denied` from every gRPC server (runtime.run_grpc_service):
    an identity that may not would wait out every refused call's publish instead of refusing at once."""
    for name in ("retention", "ingest", "trainer", "renderer"):
        assert CALL_DENIED_AUDIT in nats_permissions(identity(name)).publish_allow, name
