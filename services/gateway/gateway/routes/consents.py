"""Consent grants of a subject (grant, list, withdraw) and the tenant's consent policy.

Retention owns both and checks every rule (`retention.consent_api`): the gateway only carries the call
with the caller's token. A grant made with the person's own token is `granted_by: subject`; a tenant whose
policy says `grants_need_subject_token` refuses the grant of a tenant-level token (403
`grant_needs_subject_token`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response
from google.protobuf.timestamp_pb2 import Timestamp

from gateway import access, consent_schemas
from gateway.contract import answers, header
from gateway.deps import Backends, ConsentsRead, ConsentsWrite, Idempotent
from gateway.errors import ApiError
from gateway.schemas import Purpose
from likeness.v1 import retention_pb2

router = APIRouter(tags=["consents"])


def _tenant_only(subject: str | None) -> None:
    if subject is not None:
        raise ApiError(403, "insufficient_scope", "An end-user token cannot read or change tenant policy.")


@router.post(
    "/v1/subjects/{subject_id}/consents",
    status_code=201,
    summary="Grant consent for one purpose",
    description="Scope `consents:write`: the person's own token, or a tenant-wide one unless the tenant's "
    "consent policy takes grants only from the person (`grants_need_subject_token`). Accepts "
    "`Idempotency-Key`.",
    responses={
        **answers(
            "not_found",
            "subject_erased",
            "grant_needs_subject_token",
            "invalid_policy_version",
            "invalid_expiry",
            "too_many_grants",
        ),
        201: {"headers": header("Location")},
    },
)
async def grant_consent(
    subject_id: str,
    body: consent_schemas.GrantConsentRequest,
    principal: ConsentsWrite,
    claim: Idempotent,
    backends: Backends,
    response: Response,
) -> consent_schemas.ConsentGrant:
    await access.live_subject(backends, principal, subject_id)
    request = retention_pb2.GrantConsentRequest(
        tenant=principal.tenant,
        subject_id=subject_id,
        purpose=body.purpose,
        policy_version=body.policy_version,
    )
    if body.expires_at is not None:
        expires = Timestamp()
        moment = body.expires_at
        expires.FromDatetime((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC))
        request.expires_at.CopyFrom(expires)
    grant = (await backends.retention.GrantConsent(request, timeout=backends.timeout)).grant
    response.headers["Location"] = f"/v1/subjects/{subject_id}/consents"
    return consent_schemas.grant(grant, datetime.now(UTC))


@router.get(
    "/v1/subjects/{subject_id}/consents",
    summary="The subject's consent grants, oldest first (the history: withdrawn and expired ones too)",
    description="Scope `consents:read`.",
    responses=answers("not_found", "subject_erased"),
)
async def list_consents(
    subject_id: str, principal: ConsentsRead, backends: Backends
) -> consent_schemas.ConsentList:
    await access.live_subject(backends, principal, subject_id)
    request = retention_pb2.ListConsentsRequest(tenant=principal.tenant, subject_id=subject_id)
    grants = (await backends.retention.ListConsents(request, timeout=backends.timeout)).grants
    now = datetime.now(UTC)
    return consent_schemas.ConsentList(grants=[consent_schemas.grant(grant, now) for grant in grants])


@router.delete(
    "/v1/subjects/{subject_id}/consents",
    summary="Withdraw consent for one purpose: its queued and running jobs are cancelled, new ones refused",
    description="Scope `consents:write`. Withdrawing what is not granted answers the same 200 with nothing "
    "withdrawn. With the tenant's `erase_on_withdrawal` and no live grant left, the subject's erasure starts "
    "(`erasure_id`).",
    responses=answers("not_found", "subject_erased"),
)
async def withdraw_consent(
    subject_id: str, purpose: Purpose, principal: ConsentsWrite, backends: Backends
) -> consent_schemas.ConsentWithdrawal:
    await access.live_subject(backends, principal, subject_id)
    request = retention_pb2.WithdrawConsentRequest(
        tenant=principal.tenant, subject_id=subject_id, purpose=purpose
    )
    answer = await backends.retention.WithdrawConsent(request, timeout=backends.timeout)
    now = datetime.now(UTC)
    return consent_schemas.ConsentWithdrawal(
        withdrawn=[consent_schemas.grant(grant, now) for grant in answer.withdrawn],
        erasure_id=answer.erasure_id or None,
    )


@router.get(
    "/v1/consent-policy",
    summary="The tenant's consent policy",
    description="Scope `consents:read`; not with an end user's token.",
)
async def get_consent_policy(principal: ConsentsRead, backends: Backends) -> consent_schemas.ConsentPolicy:
    _tenant_only(principal.subject)
    request = retention_pb2.GetConsentPolicyRequest(tenant=principal.tenant)
    policy = (await backends.retention.GetConsentPolicy(request, timeout=backends.timeout)).policy
    return consent_schemas.policy(policy)


@router.put(
    "/v1/consent-policy",
    summary="Set the tenant's consent policy (applies at once, to every subject)",
    description="Scope `consents:write`; not with an end user's token. Idempotent by nature (PUT).",
)
async def put_consent_policy(
    body: consent_schemas.ConsentPolicy, principal: ConsentsWrite, backends: Backends
) -> consent_schemas.ConsentPolicy:
    _tenant_only(principal.subject)
    request = retention_pb2.SetConsentPolicyRequest(
        tenant=principal.tenant,
        policy=retention_pb2.ConsentPolicy(
            grants_need_subject_token=body.grants_need_subject_token,
            erase_on_withdrawal=body.erase_on_withdrawal,
        ),
    )
    policy = (await backends.retention.SetConsentPolicy(request, timeout=backends.timeout)).policy
    return consent_schemas.policy(policy)
