"""Per-item deletion and rectification: the half of `RetentionServicer` that serves a person's rights over
one item (`PurgeItem`) and over what the subject's record holds (`RectifySubject`).

`PurgeItem` removes every stored version of one item, named from its kind and ids (`retention.item_purge`);
the gateway calls it between the owner's mark and the owner's confirmation, and only with a token that
may touch the subject and holds the scope of that kind's delete route. No service may call it: a
compromised ingest, trainer or renderer cannot remove a version of anything.

`RectifySubject` corrects the tenant's reference (held only as its keyed HMAC): nothing else of the
record can be changed through it (tenant, status, deadlines and consent have their own rules and routes).
"""

from __future__ import annotations

import asyncio
import hmac

import grpc
from nats.js.errors import KeyWrongLastSequenceError

from likeness.audit import AuditTrail, AuditTrailFull
from likeness.hashing import keyed_hmac
from likeness.method_access import current_principal, require_subject
from likeness.rpc_errors import abort
from likeness.runtime import Platform
from likeness.store import StoreError
from likeness.v1 import retention_pb2
from retention.config import RetentionSettings
from retention.item_purge import KIND_SCOPES, InvalidItem, item_prefixes
from retention.records import RetentionRecords

Context = grpc.aio.ServicerContext[object, object]
SS = retention_pb2.SubjectStatus
#: The longest external reference a tenant may store (its HMAC is what is kept; this bounds the work).
MAX_EXTERNAL_REF_LENGTH = 256
#: Compare-and-set attempts against concurrent changes of the record before answering ABORTED.
UPDATE_ATTEMPTS = 3


class ItemMethods:
    """Provided by `RetentionServicer`: these attributes and `_require_subject`."""

    platform: Platform
    records: RetentionRecords
    settings: RetentionSettings
    audit: AuditTrail

    async def _require_subject(
        self, tenant: str, subject_id: str, context: Context
    ) -> tuple[retention_pb2.Subject, int]:
        raise NotImplementedError

    async def PurgeItem(
        self, request: retention_pb2.PurgeItemRequest, context: Context
    ) -> retention_pb2.PurgeItemResponse:
        principal = await require_subject(context, request.tenant, request.subject_id)
        needed = KIND_SCOPES.get(request.kind)
        if needed is None or needed not in principal.scopes:
            await abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "insufficient_scope",
                "This token may not delete items of this kind.",
            )
        try:
            item = item_prefixes(
                request.tenant, request.subject_id, request.kind, request.item_id, request.parent_id
            )
        except InvalidItem as invalid:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "invalid_item", str(invalid))
        # An erased (or erasing) subject's objects are erasure's business; the answer is the same 404.
        subject, _ = await self._require_subject(request.tenant, request.subject_id, context)
        if subject.status != SS.SUBJECT_STATUS_ACTIVE:
            await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "No such subject.")
        deleted = 0
        try:
            for prefix in item.prefixes:
                objects, _ = await asyncio.to_thread(self.platform.store.delete_all_versions, prefix)
                deleted += objects
        except StoreError:
            await abort(
                context, grpc.StatusCode.UNAVAILABLE, "storage_unavailable", "Storage is unavailable; retry."
            )
        return retention_pb2.PurgeItemResponse(
            versions_deleted=deleted,
            backups_retention_days=self.settings.vault_snapshot_retention_days,
        )

    async def RectifySubject(
        self, request: retention_pb2.RectifySubjectRequest, context: Context
    ) -> retention_pb2.RectifySubjectResponse:
        ref = request.external_ref
        # Kept exactly as given, as `OpenSubject` keeps it: the tenant finds its subject by the same string.
        if request.clear_external_ref == bool(ref) or len(ref) > MAX_EXTERNAL_REF_LENGTH:
            await abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_rectification",
                f"Give a new external reference (1..{MAX_EXTERNAL_REF_LENGTH} characters), or clear it.",
            )
        wanted = ""
        if ref:
            secret = self.settings.hmac_secret.get_secret_value()
            wanted = keyed_hmac(secret, "external_ref", request.tenant, ref)
        rectified: list[str] = []
        for _ in range(UPDATE_ATTEMPTS):
            subject, revision = await self._require_subject(request.tenant, request.subject_id, context)
            if subject.status != SS.SUBJECT_STATUS_ACTIVE:
                await abort(
                    context, grpc.StatusCode.FAILED_PRECONDITION, "subject_erased", "The subject is erased."
                )
            if hmac.compare_digest(wanted.encode(), subject.external_ref_hmac.encode()):
                break  # already so: nothing to change, nothing to audit
            subject.external_ref_hmac = wanted
            try:
                # Compare-and-set: a concurrent change (activity, erasure) is read again, never overwritten.
                await self.records.update_subject(subject, revision)
            except KeyWrongLastSequenceError:
                continue
            rectified.append("external_ref")
            break
        else:
            await abort(
                context, grpc.StatusCode.UNAVAILABLE, "subject_busy", "The subject changed meanwhile; retry."
            )
        if rectified:
            try:
                await self.audit.record(
                    request.tenant,
                    "subject.rectified",
                    subject.id,
                    "ok",
                    principal=self.audit.principal(current_principal()),
                    purpose="rectification",
                )
            except AuditTrailFull:
                await abort(
                    context,
                    grpc.StatusCode.UNAVAILABLE,
                    "audit_trail_full",
                    "The audit trail is full; the operator has been alerted. Try again later.",
                )
        shown = retention_pb2.Subject()
        shown.CopyFrom(subject)
        shown.ClearField("external_ref_hmac")
        return retention_pb2.RectifySubjectResponse(subject=shown, rectified=rectified)
