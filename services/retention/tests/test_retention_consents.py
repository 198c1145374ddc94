"""Consent as data, in retention (real NATS, S3 and OpenBao): the consent given at opening becomes the first
grant, the person's own grants and withdrawals are recorded with who made them, a tenant's policy can refuse
grants from its back end and erase on withdrawal, and bad input changes nothing.

Methods are called directly as the call of an explicit principal (`acting_as`), with a context that turns
an abort into an exception carrying its machine code.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
import pytest

from likeness.consent import BY_SUBJECT, BY_TENANT, HEADSHOTS, INSTANT, TEAM_LOOK, live_grant, read_consents
from likeness.method_access import acting_as
from likeness.rpc_errors import CODE_METADATA_KEY
from likeness.timeutil import utcnow
from likeness.user_tokens import Principal
from likeness.v1 import events_pb2, retention_pb2
from likeness_dev.tokens import ALL_SCOPES
from retention.service import RetentionServicer

#: The fixture's builder of isolated retention instances (`conftest.Instances`).
Instances = Any


def tenant_wide(tenant: str) -> Principal:
    """A tenant's back end: every scope and `tenant:all`, no `sub`."""
    return Principal(tenant=tenant, scopes=frozenset(ALL_SCOPES))


class Refused(Exception):
    def __init__(self, status: grpc.StatusCode, code: str) -> None:
        super().__init__(f"{status.name} {code}")
        self.status = status
        self.code = code


class Context:
    """What `likeness.rpc_errors.abort` uses of a servicer context."""

    def __init__(self) -> None:
        self.code = ""

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.code = dict(metadata)[CODE_METADATA_KEY]

    async def abort(self, status: grpc.StatusCode, message: str) -> NoReturn:
        raise Refused(status, self.code)


def person(tenant: str, subject_id: str) -> Principal:
    """The person's own token (`sub`)."""
    return Principal(tenant=tenant, scopes=frozenset(ALL_SCOPES), subject=subject_id)


async def call(servicer: RetentionServicer, principal: Principal, method: str, request: Any) -> Any:
    with acting_as(principal):
        return await getattr(servicer, method)(request, Context())


async def grants(
    servicer: RetentionServicer, tenant: str, subject_id: str
) -> list[retention_pb2.ConsentGrant]:
    record = await read_consents(servicer.records.consents, tenant, subject_id)
    return list(record.grants) if record is not None else []


async def test_the_consent_given_at_opening_is_the_first_grant(instances: Instances) -> None:
    servicer = await instances.new()
    subject = await instances.open_subject(servicer, instances.tenant)
    [first] = await grants(servicer, instances.tenant, subject.id)
    assert (first.purpose, first.policy_version, first.granted_by) == (HEADSHOTS, "2026-01", BY_TENANT)
    assert first.id.startswith("cns_")
    assert first.HasField("granted_at")
    record = await read_consents(servicer.records.consents, instances.tenant, subject.id)
    assert live_grant(record, HEADSHOTS, utcnow()) is not None
    assert live_grant(record, TEAM_LOOK, utcnow()) is None, "a grant is for its own purpose only"


async def test_the_person_grants_and_withdraws_and_withdrawal_is_announced(instances: Instances) -> None:
    servicer = await instances.new()
    tenant = instances.tenant
    subject = await instances.open_subject(servicer, tenant)
    own = person(tenant, subject.id)
    granted = await call(
        servicer,
        own,
        "GrantConsent",
        retention_pb2.GrantConsentRequest(
            tenant=tenant, subject_id=subject.id, purpose=TEAM_LOOK, policy_version="2026-02"
        ),
    )
    assert granted.grant.granted_by == BY_SUBJECT

    answer = await call(
        servicer,
        own,
        "WithdrawConsent",
        retention_pb2.WithdrawConsentRequest(tenant=tenant, subject_id=subject.id, purpose=TEAM_LOOK),
    )
    assert [grant.id for grant in answer.withdrawn] == [granted.grant.id]
    assert answer.erasure_id == "", "the tenant's policy does not erase on withdrawal"
    record = await read_consents(servicer.records.consents, tenant, subject.id)
    assert live_grant(record, TEAM_LOOK, utcnow()) is None
    assert live_grant(record, HEADSHOTS, utcnow()) is not None, "only the purpose withdrawn goes"

    stream = await servicer.platform.bus.js.get_last_msg(
        "LIKENESS_EVENTS", f"evt.{tenant}.{subject.id}.consent.withdrawn"
    )
    event = events_pb2.ConsentWithdrawn()
    event.ParseFromString(stream.data or b"")
    assert (event.tenant, event.subject_id, event.purpose) == (tenant, subject.id, TEAM_LOOK)

    listed = await call(
        servicer, own, "ListConsents", retention_pb2.ListConsentsRequest(tenant=tenant, subject_id=subject.id)
    )
    assert [g.purpose for g in listed.grants] == [HEADSHOTS, TEAM_LOOK], "the history keeps withdrawn grants"
    assert listed.grants[1].withdrawn_by == BY_SUBJECT


async def test_a_tenant_that_takes_consent_only_from_the_person_refuses_its_back_end(
    instances: Instances,
) -> None:
    servicer = await instances.new()
    tenant = instances.tenant
    policy = retention_pb2.ConsentPolicy(grants_need_subject_token=True)
    await call(
        servicer,
        tenant_wide(tenant),
        "SetConsentPolicy",
        retention_pb2.SetConsentPolicyRequest(tenant=tenant, policy=policy),
    )
    subject = await instances.open_subject(servicer, tenant)
    assert await grants(servicer, tenant, subject.id) == [], "no grant from the back end that opened it"

    request = retention_pb2.GrantConsentRequest(
        tenant=tenant, subject_id=subject.id, purpose=HEADSHOTS, policy_version="2026-01"
    )
    with pytest.raises(Refused) as refused:
        await call(servicer, tenant_wide(tenant), "GrantConsent", request)
    assert (refused.value.status, refused.value.code) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "grant_needs_subject_token",
    )
    assert await grants(servicer, tenant, subject.id) == []

    granted = await call(servicer, person(tenant, subject.id), "GrantConsent", request)
    assert granted.grant.granted_by == BY_SUBJECT


@pytest.mark.parametrize(
    ("purpose", "version", "code"),
    [("professional headshots", "2026-01", "invalid_purpose"), (INSTANT, "", "invalid_policy_version")],
)
async def test_a_bad_grant_is_refused_and_changes_nothing(
    instances: Instances, purpose: str, version: str, code: str
) -> None:
    servicer = await instances.new()
    tenant = instances.tenant
    subject = await instances.open_subject(servicer, tenant)
    before = await grants(servicer, tenant, subject.id)
    request = retention_pb2.GrantConsentRequest(
        tenant=tenant, subject_id=subject.id, purpose=purpose, policy_version=version
    )
    with pytest.raises(Refused) as refused:
        await call(servicer, person(tenant, subject.id), "GrantConsent", request)
    assert refused.value.code == code
    assert await grants(servicer, tenant, subject.id) == before


async def test_withdrawing_the_last_grant_erases_when_the_tenant_says_so(instances: Instances) -> None:
    servicer = await instances.new()
    tenant = instances.tenant
    await call(
        servicer,
        tenant_wide(tenant),
        "SetConsentPolicy",
        retention_pb2.SetConsentPolicyRequest(
            tenant=tenant, policy=retention_pb2.ConsentPolicy(erase_on_withdrawal=True)
        ),
    )
    subject = await instances.open_subject(servicer, tenant)
    answer = await call(
        servicer,
        person(tenant, subject.id),
        "WithdrawConsent",
        retention_pb2.WithdrawConsentRequest(tenant=tenant, subject_id=subject.id, purpose=HEADSHOTS),
    )
    assert answer.erasure_id.startswith("era_")
    erasure = await instances.wait_erased(servicer, tenant, answer.erasure_id)
    assert erasure.cause == "consent_withdrawn"
    assert await read_consents(servicer.records.consents, tenant, subject.id) is None, "grants go too"
