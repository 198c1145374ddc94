"""Retention's consent methods (part of `RetentionServicer`): grant, list and withdraw a subject's consent,
and read or set the tenant's consent policy.

A grant names who made it: `subject` when the call's token is the person's own (`sub`), `tenant` for a
tenant-level token. With the tenant's policy `grants_need_subject_token`, a tenant-level grant is refused
(PERMISSION_DENIED `grant_needs_subject_token`, audited as `consent.refused`), so the tenant's back end
cannot consent on a person's behalf. Anyone who may touch the subject may withdraw: less processing never
needs more authority. A withdrawal announces `consent.withdrawn` (trainer and renderer cancel that purpose's
jobs) and, with the policy `erase_on_withdrawal` and no live grant left, starts the subject's erasure.
"""

from __future__ import annotations

import grpc

from likeness.audit import CONSENT_PURPOSES, AuditTrail
from likeness.bus import event_nats_subject
from likeness.consent import BY_SUBJECT, BY_TENANT
from likeness.method_access import require_tenant
from likeness.rpc_errors import abort
from likeness.runtime import Platform
from likeness.timeutil import Clock, from_timestamp, to_timestamp
from likeness.user_tokens import Principal
from likeness.v1 import events_pb2, retention_pb2
from retention.consents import ConsentBook, Grantor, InvalidGrant
from retention.erasure import Eraser

Context = grpc.aio.ServicerContext[object, object]
SS = retention_pb2.SubjectStatus
#: The erasure cause of a withdrawal that left no live grant (tenant policy `erase_on_withdrawal`).
WITHDRAWAL_CAUSE = "consent_withdrawn"


def grantor_of(principal: Principal) -> Grantor:
    return Grantor(BY_SUBJECT if principal.subject is not None else BY_TENANT, principal.client or "")


class ConsentMethods:
    """The consent half of `RetentionServicer` (which provides these attributes and `_require_subject`)."""

    platform: Platform
    consents: ConsentBook
    audit: AuditTrail
    eraser: Eraser
    clock: Clock

    async def _require_subject(
        self, tenant: str, subject_id: str, context: Context
    ) -> tuple[retention_pb2.Subject, int]:
        raise NotImplementedError

    async def _principal_and_subject(
        self, tenant: str, subject_id: str, context: Context, *, live: bool
    ) -> tuple[Principal, retention_pb2.Subject]:
        subject, _ = await self._require_subject(tenant, subject_id, context)
        principal = await require_tenant(context, tenant)
        if live and subject.status != SS.SUBJECT_STATUS_ACTIVE:
            await abort(
                context, grpc.StatusCode.FAILED_PRECONDITION, "subject_erased", "The subject is erased."
            )
        return principal, subject

    async def GrantConsent(
        self, request: retention_pb2.GrantConsentRequest, context: Context
    ) -> retention_pb2.GrantConsentResponse:
        principal, subject = await self._principal_and_subject(
            request.tenant, request.subject_id, context, live=True
        )
        policy = await self.consents.policy(subject.tenant)
        if policy.grants_need_subject_token and principal.subject is None:
            await self.audit.record(
                subject.tenant,
                "consent.refused",
                subject.id,
                "denied",
                principal=self.audit.principal(principal),
                purpose=request.purpose if request.purpose in CONSENT_PURPOSES else "",
            )
            await abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "grant_needs_subject_token",
                "This tenant takes consent only from the person's own token.",
            )
        expires = from_timestamp(request.expires_at) if request.HasField("expires_at") else None
        try:
            grant = await self.consents.grant(
                subject.tenant,
                subject.id,
                request.purpose,
                request.policy_version,
                expires,
                grantor_of(principal),
            )
        except InvalidGrant as invalid:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, invalid.code, str(invalid))
        await self.audit.record(
            subject.tenant,
            "consent.granted",
            subject.id,
            "ok",
            grant.id,
            principal=self.audit.principal(principal),
            purpose=grant.purpose,
        )
        return retention_pb2.GrantConsentResponse(grant=grant)

    async def ListConsents(
        self, request: retention_pb2.ListConsentsRequest, context: Context
    ) -> retention_pb2.ListConsentsResponse:
        _, subject = await self._principal_and_subject(
            request.tenant, request.subject_id, context, live=False
        )
        return retention_pb2.ListConsentsResponse(
            grants=await self.consents.history(subject.tenant, subject.id)
        )

    async def WithdrawConsent(
        self, request: retention_pb2.WithdrawConsentRequest, context: Context
    ) -> retention_pb2.WithdrawConsentResponse:
        principal, subject = await self._principal_and_subject(
            request.tenant, request.subject_id, context, live=True
        )
        try:
            withdrawn, any_left = await self.consents.withdraw(
                subject.tenant, subject.id, request.purpose, grantor_of(principal)
            )
        except InvalidGrant as invalid:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, invalid.code, str(invalid))
        answer = retention_pb2.WithdrawConsentResponse(withdrawn=withdrawn)
        if withdrawn:
            now = self.clock.now()
            # Announced even when nothing runs: trainer and renderer cancel whatever of it is queued.
            await self.platform.bus.publish(
                event_nats_subject(subject.tenant, subject.id, "consent.withdrawn"),
                events_pb2.ConsentWithdrawn(
                    tenant=subject.tenant,
                    subject_id=subject.id,
                    purpose=request.purpose,
                    at=to_timestamp(now),
                ),
                msg_id=f"{withdrawn[0].id}.withdrawn",
            )
            for grant in withdrawn:
                await self.audit.record(
                    subject.tenant,
                    "consent.withdrawn",
                    subject.id,
                    "ok",
                    grant.id,
                    principal=self.audit.principal(principal),
                    purpose=grant.purpose,
                )
        policy = await self.consents.policy(subject.tenant)
        if policy.erase_on_withdrawal and not any_left:
            requested = await self.eraser.request(subject.tenant, subject.id, WITHDRAWAL_CAUSE)
            if requested.erasure is not None:
                answer.erasure_id = requested.erasure.id
        return answer

    async def GetConsentPolicy(
        self, request: retention_pb2.GetConsentPolicyRequest, context: Context
    ) -> retention_pb2.GetConsentPolicyResponse:
        await require_tenant(context, request.tenant)
        return retention_pb2.GetConsentPolicyResponse(policy=await self.consents.policy(request.tenant))

    async def SetConsentPolicy(
        self, request: retention_pb2.SetConsentPolicyRequest, context: Context
    ) -> retention_pb2.SetConsentPolicyResponse:
        principal = await require_tenant(context, request.tenant)
        await self.consents.set_policy(request.tenant, request.policy)
        await self.audit.record(
            request.tenant, "policy.changed", "", "ok", principal=self.audit.principal(principal)
        )
        return retention_pb2.SetConsentPolicyResponse(policy=request.policy)
