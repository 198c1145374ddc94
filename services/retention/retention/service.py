"""RetentionService: opens subjects (with their own Vault key, the tenant's schedule and their first consent
grant), reports them, erases them, runs the reaper, issues erasure receipts and states tenants' retention
policies. The consent methods (grants, withdrawal, the tenant's consent policy) are `retention.consent_api`.

Every method that reads or changes a tenant's or a person's data runs with the caller's verified token
(`retention.method_rules`) and checks its request against it: the tenant must be the token's, and an end
user's token may touch only its own subject (an erasure's subject comes from its records, checked there).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging

import grpc

from likeness import ids
from likeness.audit import PURPOSES, AuditTrail, AuditTrailFull
from likeness.bus import event_nats_subject
from likeness.hashing import keyed_hmac
from likeness.method_access import (
    current_principal,
    may_touch,
    require_subject,
    require_tenant,
    require_tenant_wide,
)
from likeness.rpc_errors import abort
from likeness.runtime import Platform
from likeness.timeutil import SYSTEM_CLOCK, Clock, to_timestamp
from likeness.user_tokens import Principal
from likeness.v1 import events_pb2, retention_pb2, retention_pb2_grpc
from likeness.vault_transit import KeyError_, VaultUnavailable
from retention.audit_api import AuditMethods
from retention.audit_log import AuditLog
from retention.config import RetentionSettings
from retention.consent_api import ConsentMethods, grantor_of
from retention.consents import ConsentBook, InvalidGrant, validate_grant
from retention.erasure import Eraser
from retention.holdings_api import HoldingsMethods
from retention.item_methods import ItemMethods
from retention.leases import Leases
from retention.method_rules import TOKEN_RULES
from retention.orphans import OrphanSweeper
from retention.reaper import Reaper, SweepResult
from retention.receipts import ReceiptIssuer
from retention.records import RetentionRecords
from retention.schedule import Schedule, describe_policy, hard_deadline
from retention.tenants import TenantPolicies

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[object, object]
SS = retention_pb2.SubjectStatus
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
ES = retention_pb2.ErasureStatus


class RetentionServicer(
    ConsentMethods,
    HoldingsMethods,
    ItemMethods,
    AuditMethods,
    retention_pb2_grpc.RetentionServiceServicer,
):
    #: What each method asks of the caller's token (enforced by the server's interceptor).
    token_rules = TOKEN_RULES

    def __init__(
        self,
        platform: Platform,
        records: RetentionRecords,
        settings: RetentionSettings,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.platform = platform
        self.records = records
        self.settings = settings
        self.clock = clock
        pseudonyms = settings.audit_pseudonym_secret.get_secret_value()
        self.audit = AuditTrail(platform.bus, pseudonyms, actor="retention", clock=clock)
        self.audit_log = AuditLog(platform.bus.js)
        self.leases = Leases(records.leases, settings.holder, clock, settings.lease_seconds)
        self.receipts = ReceiptIssuer(records.receipts, settings, clock)
        self.tenants = TenantPolicies(records.tenants, settings)
        self.consents = ConsentBook(records, clock)
        self.eraser = Eraser(platform, records, self.audit, settings, clock, self.leases, self.receipts)
        self.reaper = Reaper(platform, records, self.eraser, self.audit, settings, clock)
        self.eraser.on_scheduled = self.reaper.remember
        self.orphans = OrphanSweeper(platform, records, self.audit, self.leases, settings, clock)

    # ------------------------------------------------------------------------------------------ subjects

    async def OpenSubject(
        self, request: retention_pb2.OpenSubjectRequest, context: Context
    ) -> retention_pb2.OpenSubjectResponse:
        principal = await require_tenant(context, request.tenant)
        if not ids.is_valid_tenant(request.tenant):
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "invalid_tenant", "The tenant id is not valid."
            )
        if not request.consent.purpose.strip() or not request.consent.policy_version.strip():
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_consent",
                "Consent with a purpose and a policy version is required to open a subject.",
            )
        try:
            # The consent given at opening becomes the first grant: it must be a grant we could record.
            validate_grant(request.consent.purpose, request.consent.policy_version, None, self.clock.now())
        except InvalidGrant as invalid:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, invalid.code, str(invalid))
        subject_id = ids.new_id("sub")
        try:
            await asyncio.to_thread(self.platform.keys.create, subject_id)
        except VaultUnavailable:
            await abort(
                context, grpc.StatusCode.UNAVAILABLE, "vault_unavailable", "The key service is unavailable."
            )
        now = self.clock.now()
        schedule, _ = await self.tenants.effective(request.tenant)
        consent = retention_pb2.Consent()
        consent.CopyFrom(request.consent)
        consent.given_at.CopyFrom(to_timestamp(now))
        subject = retention_pb2.Subject(
            tenant=request.tenant,
            id=subject_id,
            status=SS.SUBJECT_STATUS_ACTIVE,
            created_at=to_timestamp(now),
            last_activity_at=to_timestamp(now),
            consent=consent,
            retention=schedule,
            delete_by=to_timestamp(hard_deadline(now, self.settings)),
        )
        if request.external_ref:
            subject.external_ref_hmac = keyed_hmac(
                self.settings.hmac_secret.get_secret_value(),
                "external_ref",
                request.tenant,
                request.external_ref,
            )
        await self.records.create_subject(subject)
        if not (await self.consents.policy(request.tenant)).grants_need_subject_token:
            # A tenant that takes consent only from the person's own token gets no grant from its back end
            # here: the person grants (`POST /v1/subjects/{id}/consents`) before any training or render.
            await self.consents.grant(
                request.tenant,
                subject_id,
                consent.purpose,
                consent.policy_version,
                None,
                grantor_of(principal),
            )
            await self._audit_or_refuse(
                context, request.tenant, "consent.granted", subject_id, purpose=consent.purpose
            )
        await self.platform.bus.publish(
            event_nats_subject(request.tenant, subject_id, "subject.opened"),
            events_pb2.SubjectOpened(tenant=request.tenant, subject_id=subject_id, at=to_timestamp(now)),
            msg_id=f"{subject_id}.opened",
        )
        await self._audit_or_refuse(
            context, request.tenant, "subject.opened", subject_id, purpose=consent.purpose
        )
        return retention_pb2.OpenSubjectResponse(subject=_public(subject))

    async def _audit_or_refuse(
        self, context: Context, tenant: str, action: str, subject_id: str, *, purpose: str = ""
    ) -> None:
        """Records the access by the call's principal; a full audit trail refuses the call (503 at the
        gateway) rather than let an unrecorded access through."""
        try:
            await self.audit.record(
                tenant,
                action,
                subject_id,
                "ok",
                principal=self.audit.principal(current_principal()),
                purpose=purpose if purpose in PURPOSES else "",
            )
        except AuditTrailFull:
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "audit_trail_full",
                "The audit trail is full; the operator has been alerted. Try again later.",
            )

    async def _record_if_denied(self, tenant: str, subject_id: str) -> None:
        await self.record_if_denied(current_principal(), tenant, subject_id)

    async def record_if_denied(self, principal: Principal | None, tenant: str, subject_id: str) -> None:
        """`access.denied` on the subject when a token of this tenant may not touch it and it exists: the
        person learns from their log that someone tried. Retention, which owns subjects, is where every
        such refusal is recorded, once (the gateway asks it: `gateway.access.refused`; the interceptor
        tells it: `likeness.grpc_user_tokens.on_wrong_subject`); nothing is recorded for a subject that
        does not exist or is erased, or for another tenant (nobody to tell)."""
        if principal is None or principal.tenant != tenant or principal.can_touch(subject_id):
            return
        if not (ids.is_valid_tenant(tenant) and ids.is_valid_id(subject_id, "sub")):
            return
        found = await self.records.get_subject(tenant, subject_id)
        if found is None or found[0].status != SS.SUBJECT_STATUS_ACTIVE:
            return
        await self.audit.record_quietly(
            tenant, "access.denied", subject_id, "denied", principal=self.audit.principal(principal)
        )

    async def _require_subject(
        self, tenant: str, subject_id: str, context: Context
    ) -> tuple[retention_pb2.Subject, int]:
        await self._record_if_denied(tenant, subject_id)
        await require_subject(context, tenant, subject_id)
        found = None
        if ids.is_valid_tenant(tenant) and ids.is_valid_id(subject_id, "sub"):
            found = await self.records.get_subject(tenant, subject_id)
        if found is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "No such subject.")
        return found

    async def GetSubject(
        self, request: retention_pb2.GetSubjectRequest, context: Context
    ) -> retention_pb2.GetSubjectResponse:
        # A status read: not an access to personal data, so it writes no audit record.
        subject, _ = await self._require_subject(request.tenant, request.subject_id, context)
        return retention_pb2.GetSubjectResponse(subject=_public(subject))

    async def EraseSubject(
        self, request: retention_pb2.EraseSubjectRequest, context: Context
    ) -> retention_pb2.EraseSubjectResponse:
        subject, _ = await self._require_subject(request.tenant, request.subject_id, context)
        requested = await self.eraser.request(subject.tenant, subject.id, request.cause or "request")
        if requested.erasure is None:  # only if the record vanished in between
            await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "No such subject.")
        # The salt that lets the person check their receipt: in this answer only, never stored.
        return retention_pb2.EraseSubjectResponse(
            erasure=requested.erasure, receipt_salt=requested.receipt_salt
        )

    async def GetErasure(
        self, request: retention_pb2.GetErasureRequest, context: Context
    ) -> retention_pb2.GetErasureResponse:
        await require_tenant(context, request.tenant)
        found = await self.visible_erasure(request.tenant, request.erasure_id)
        if found is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "erasure_not_found", "No such erasure.")
        return retention_pb2.GetErasureResponse(erasure=found[0])

    async def Sweep(
        self, request: retention_pb2.SweepRequest, context: Context
    ) -> retention_pb2.SweepResponse:
        result = await self.sweep()
        return retention_pb2.SweepResponse(
            subjects_erased=result.subjects_erased,
            objects_deleted=result.objects_deleted,
            deadlines_fired=result.deadlines_fired,
            overdue=result.overdue,
        )

    async def GetRetentionPolicy(
        self, request: retention_pb2.GetRetentionPolicyRequest, context: Context
    ) -> retention_pb2.GetRetentionPolicyResponse:
        await require_tenant(context, request.tenant)
        if not ids.is_valid_tenant(request.tenant):
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "invalid_tenant", "The tenant id is not valid."
            )
        schedule, chosen, text = await self.policy(request.tenant)
        return retention_pb2.GetRetentionPolicyResponse(
            schedule=schedule,
            tenant_specific=chosen,
            hard_cap_days=self.settings.hard_cap_days,
            backups_retention_days=self.settings.vault_snapshot_retention_days,
            text=text,
        )

    async def SetRetentionPolicy(
        self, request: retention_pb2.SetRetentionPolicyRequest, context: Context
    ) -> retention_pb2.SetRetentionPolicyResponse:
        await require_tenant(context, request.tenant)
        try:
            schedule = await self.set_policy(request.tenant, request.schedule)
        except ValueError as invalid:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "invalid_schedule", str(invalid))
        return retention_pb2.SetRetentionPolicyResponse(schedule=schedule)

    async def GetErasureReceipt(
        self, request: retention_pb2.GetErasureReceiptRequest, context: Context
    ) -> retention_pb2.GetErasureReceiptResponse:
        await require_tenant(context, request.tenant)
        raw = None
        if await self.visible_erasure(request.tenant, request.erasure_id) is not None:
            raw = await self.receipt(request.tenant, request.erasure_id)
        if raw is None:
            await abort(
                context, grpc.StatusCode.NOT_FOUND, "receipt_not_found", "No receipt (yet) for this erasure."
            )
        return retention_pb2.GetErasureReceiptResponse(receipt_json=raw.decode())

    async def GetReceiptKeys(
        self, request: retention_pb2.GetReceiptKeysRequest, context: Context
    ) -> retention_pb2.GetReceiptKeysResponse:
        return retention_pb2.GetReceiptKeysResponse(jwks_json=json.dumps(self.receipt_keys()))

    async def ListSubjects(
        self, request: retention_pb2.ListSubjectsRequest, context: Context
    ) -> retention_pb2.ListSubjectsResponse:
        await require_tenant_wide(context, request.tenant)
        size = request.page_size or DEFAULT_PAGE_SIZE
        if not 1 <= size <= MAX_PAGE_SIZE:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_page_size",
                f"page_size must be 1..{MAX_PAGE_SIZE}.",
            )
        if request.page_token and not ids.is_valid_id(request.page_token, "sub"):
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_page_token",
                "The page token is not valid.",
            )
        if not ids.is_valid_tenant(request.tenant):
            return retention_pb2.ListSubjectsResponse()
        listed = await self.subject_page(request.tenant, size, request.page_token)
        page = listed[:size]
        return retention_pb2.ListSubjectsResponse(
            subjects=[_public(subject) for subject in page],
            next_page_token=page[-1].id if len(listed) > size else "",
        )

    async def subject_page(self, tenant: str, size: int, after: str) -> list[retention_pb2.Subject]:
        """Up to `size` + 1 subjects of the tenant, newest first, opened before `after` (one more tells
        whether another page follows). Read in the order they were opened (`records.subject_order`),
        record by record for the page only: a page costs the same whatever the tenant's size. An id
        whose record is gone or erased (an erasure finishing) is skipped."""
        listed: list[retention_pb2.Subject] = []
        async for batch in self.records.subject_order.newest_first(tenant, after):
            position = 0
            while position < len(batch):
                wanted = batch[position : position + size + 1 - len(listed)]
                position += len(wanted)
                found = await asyncio.gather(*(self.records.get_subject(tenant, s) for s in wanted))
                listed += [
                    record for record, _ in filter(None, found) if record.status != SS.SUBJECT_STATUS_ERASED
                ]
                if len(listed) > size:
                    return listed
        return listed

    async def sweep(self) -> SweepResult:
        """One full pass of the reaper now: due deadlines, due subjects, erasures left unfinished."""
        return await self.reaper.sweep()

    # ------------------------------------------------------------------------------------------ receipts

    async def visible_erasure(self, tenant: str, erasure_id: str) -> tuple[retention_pb2.Erasure, str] | None:
        """The erasure and its subject, if its records agree and the call's token may see that subject
        (None otherwise: the caller answers NOT_FOUND, exactly as for an erasure that does not exist)."""
        if not ids.is_valid_tenant(tenant) or not ids.is_valid_id(erasure_id, "era"):
            return None
        found = await self.records.erasure_with_subject(tenant, erasure_id)
        if found is None or not self._may_see(found[0], found[1]):
            return None
        return found

    def _may_see(self, erasure: retention_pb2.Erasure, subject_id: str) -> bool:
        if subject_id:
            return may_touch(erasure.tenant, subject_id)
        # A completed erasure no longer names its subject: a person's own token sees it when the keyed HMAC
        # of the token's subject is the erasure's.
        principal = current_principal()
        if principal is None or principal.tenant != erasure.tenant:
            return False
        if principal.subject is not None:
            mine = self.eraser.subject_hmac(erasure.tenant, principal.subject)
            return hmac.compare_digest(mine.encode(), erasure.subject_hmac.encode())
        return principal.tenant_wide

    async def receipt(self, tenant: str, erasure_id: str) -> bytes | None:
        """The signed receipt of a completed erasure (issued now if a crash left it unissued); None while
        the erasure is under way or unknown."""
        if not ids.is_valid_tenant(tenant) or not ids.is_valid_id(erasure_id, "era"):
            return None
        stored = await self.receipts.get(tenant, erasure_id)
        if stored is not None:
            return stored
        found = await self.records.erasure_with_subject(tenant, erasure_id)
        if found is None or found[0].status != ES.ERASURE_STATUS_COMPLETED:
            return None  # a receipt is signed only for an erasure its subject's record confirms
        return await self.receipts.issue(found[0])

    def receipt_keys(self) -> dict[str, list[dict[str, str]]]:
        """The published public keys (JWK set) that verify receipts."""
        return self.receipts.public_keys()

    # ------------------------------------------------------------------------------------------ policies

    async def policy(self, tenant: str) -> tuple[Schedule, bool, str]:
        """The schedule a subject of `tenant` opened now gets, whether the tenant chose it, and in words."""
        schedule, chosen = await self.tenants.effective(tenant)
        return schedule, chosen, describe_policy(tenant, schedule, self.settings, tenant_specific=chosen)

    async def set_policy(self, tenant: str, schedule: Schedule) -> Schedule:
        if not ids.is_valid_tenant(tenant):
            raise ValueError("invalid tenant id")
        effective = await self.tenants.set(tenant, schedule)
        await self.audit.record(
            tenant, "policy.changed", "", "ok", principal=self.audit.principal(current_principal())
        )
        return effective

    # ------------------------------------------------------------------------------------------ lifecycle

    async def resume_unfinished_erasures(self) -> None:
        """After a restart, every erasure that had not completed is driven to completion.

        Only erasures their subject's record confirms: the key destroyed and the prefix deleted come from
        records that agree with each other and with their own keys, never from one record alone."""
        for listed in await self.records.all_erasures():
            if listed.status == ES.ERASURE_STATUS_COMPLETED:
                if listed.key_name:  # completed before records stopped naming the subject (an upgrade)
                    await self.eraser.conceal_completed(listed)
                continue
            found = await self.records.erasure_with_subject(listed.tenant, listed.id)
            if found is not None and found[0].status != ES.ERASURE_STATUS_COMPLETED:
                self.eraser.start(found[0], found[1])

    async def run_orphan_sweeps(self) -> None:
        while True:
            await asyncio.sleep(self.settings.orphan_sweep_interval_seconds)
            try:
                result = await self.orphans.sweep()
            except (KeyError_, OSError) as exc:
                log.warning("orphan sweep skipped", extra={"error": type(exc).__name__})
                continue
            except Exception:
                log.exception("orphan sweep failed; the next one retries")
                continue
            if result is not None:
                log.info(
                    "orphan sweep done",
                    extra={
                        "orphan_objects": result.orphan_objects,
                        "expired_objects": result.expired_objects,
                        "keys_destroyed": result.keys_destroyed,
                    },
                )


def _public(subject: retention_pb2.Subject) -> retention_pb2.Subject:
    """The record as callers see it (the external ref HMAC stays inside retention)."""
    shown = retention_pb2.Subject()
    shown.CopyFrom(subject)
    shown.ClearField("external_ref_hmac")
    return shown


__all__ = ["KeyError_", "RetentionServicer"]
