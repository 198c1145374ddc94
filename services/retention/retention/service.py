"""RetentionService: opens subjects (with their own Vault key), reports them, erases them."""

from __future__ import annotations

import asyncio
import logging

import grpc

from likeness import ids
from likeness.audit import AuditTrail
from likeness.bus import event_subject
from likeness.hashing import keyed_hmac
from likeness.keys import KEY_PREFIX, KeyError_, VaultUnavailable
from likeness.rpc_errors import abort
from likeness.runtime import Platform
from likeness.timeutil import from_timestamp, now_timestamp, to_timestamp, utcnow
from likeness.v1 import events_pb2, retention_pb2, retention_pb2_grpc
from retention.config import RetentionSettings
from retention.erasure import Eraser, new_erasure_record
from retention.records import RetentionRecords
from retention.schedule import default_schedule, hard_deadline

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[object, object]
SS = retention_pb2.SubjectStatus


class RetentionServicer(retention_pb2_grpc.RetentionServiceServicer):
    def __init__(self, platform: Platform, records: RetentionRecords, settings: RetentionSettings) -> None:
        self.platform = platform
        self.records = records
        self.settings = settings
        secret = settings.hmac_secret.get_secret_value()
        self.audit = AuditTrail(platform.bus, secret, actor="retention")
        self.eraser = Eraser(platform, records, self.audit, settings)

    async def OpenSubject(
        self, request: retention_pb2.OpenSubjectRequest, context: Context
    ) -> retention_pb2.OpenSubjectResponse:
        if not ids.is_valid_tenant(request.tenant):
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "invalid_tenant", "The tenant id is not valid."
            )
        if not request.consent.purpose.strip() or not request.consent.policy_version.strip():
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "consent_required",
                "Consent with a purpose and a policy version is required to open a subject.",
            )
        subject_id = ids.new_id("sub")
        try:
            await asyncio.to_thread(self.platform.keys.create, subject_id)
        except VaultUnavailable:
            await abort(
                context, grpc.StatusCode.UNAVAILABLE, "vault_unavailable", "The key service is unavailable."
            )
        now = utcnow()
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
            retention=default_schedule(self.settings),
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
        await self.platform.bus.publish(
            event_subject(request.tenant, subject_id, "subject.opened"),
            events_pb2.SubjectOpened(tenant=request.tenant, subject_id=subject_id, at=now_timestamp()),
            msg_id=f"{subject_id}.opened",
        )
        await self.audit.record(request.tenant, "subject.opened", subject_id, "ok")
        return retention_pb2.OpenSubjectResponse(subject=_public(subject))

    async def _require_subject(
        self, tenant: str, subject_id: str, context: Context
    ) -> tuple[retention_pb2.Subject, int]:
        found = None
        if ids.is_valid_tenant(tenant) and ids.is_valid_id(subject_id, "sub"):
            found = await self.records.get_subject(tenant, subject_id)
        if found is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "No such subject.")
        return found

    async def GetSubject(
        self, request: retention_pb2.GetSubjectRequest, context: Context
    ) -> retention_pb2.GetSubjectResponse:
        subject, _ = await self._require_subject(request.tenant, request.subject_id, context)
        return retention_pb2.GetSubjectResponse(subject=_public(subject))

    async def EraseSubject(
        self, request: retention_pb2.EraseSubjectRequest, context: Context
    ) -> retention_pb2.EraseSubjectResponse:
        subject, revision = await self._require_subject(request.tenant, request.subject_id, context)
        if subject.erasure_id:
            existing = await self.records.get_erasure(subject.tenant, subject.erasure_id)
            if existing is not None:
                return retention_pb2.EraseSubjectResponse(erasure=existing)
        cause = request.cause or "request"
        erasure = new_erasure_record(
            ids.new_id("era"),
            subject.tenant,
            self.audit.subject_hmac(subject.tenant, subject.id),
            subject.id,
            cause,
        )
        await self.records.put_erasure(erasure)
        subject.status = SS.SUBJECT_STATUS_ERASING
        subject.erasure_id = erasure.id
        await self.records.update_subject(subject, revision)
        await self.audit.record(subject.tenant, "subject.erase_requested", subject.id, "accepted", erasure.id)
        self.eraser.start(erasure, subject.id)
        return retention_pb2.EraseSubjectResponse(erasure=erasure)

    async def GetErasure(
        self, request: retention_pb2.GetErasureRequest, context: Context
    ) -> retention_pb2.GetErasureResponse:
        erasure = None
        if ids.is_valid_tenant(request.tenant) and ids.is_valid_id(request.erasure_id, "era"):
            erasure = await self.records.get_erasure(request.tenant, request.erasure_id)
        if erasure is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "erasure_not_found", "No such erasure.")
        return retention_pb2.GetErasureResponse(erasure=erasure)

    async def Sweep(
        self, request: retention_pb2.SweepRequest, context: Context
    ) -> retention_pb2.SweepResponse:
        return retention_pb2.SweepResponse(subjects_erased=await self.sweep())

    async def sweep(self) -> int:
        """Erases every active subject past its hard deadline (schedules per kind come with issue 6)."""
        erased = 0
        now = utcnow()
        for key in await self.records.all_subject_keys():
            tenant, _, subject_id = key.partition(".")
            found = await self.records.get_subject(tenant, subject_id)
            if found is None or found[0].status != SS.SUBJECT_STATUS_ACTIVE:
                continue
            deadline = from_timestamp(found[0].delete_by)
            if deadline is not None and deadline <= now:
                subject, revision = found
                erasure = new_erasure_record(
                    ids.new_id("era"),
                    tenant,
                    self.audit.subject_hmac(tenant, subject_id),
                    subject_id,
                    "retention",
                )
                await self.records.put_erasure(erasure)
                subject.status = SS.SUBJECT_STATUS_ERASING
                subject.erasure_id = erasure.id
                await self.records.update_subject(subject, revision)
                self.eraser.start(erasure, subject_id)
                erased += 1
        return erased

    async def resume_unfinished_erasures(self) -> None:
        """After a restart, every erasure that had not completed is driven to completion."""
        for erasure in await self.records.all_erasures():
            if erasure.status != retention_pb2.ErasureStatus.ERASURE_STATUS_COMPLETED:
                self.eraser.start(erasure, erasure.key_name.removeprefix(KEY_PREFIX))


def _public(subject: retention_pb2.Subject) -> retention_pb2.Subject:
    """The record as callers see it (the external ref HMAC stays inside retention)."""
    shown = retention_pb2.Subject()
    shown.CopyFrom(subject)
    shown.ClearField("external_ref_hmac")
    return shown


__all__ = ["KeyError_", "RetentionServicer"]
