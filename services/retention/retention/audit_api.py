"""The audit read methods of `RetentionService` (issue 16, item 2): the person's processing log, served to
their own token (and, for the data export, to a tenant-wide token with `subjects:export`: the gateway's
processing-log route refuses every tenant-level token itself), and the tenant's whole trail, for a
tenant-wide token with `audit:read`."""

from __future__ import annotations

import grpc

from likeness import ids
from likeness.audit import AuditTrail
from likeness.method_access import require_subject, require_tenant_wide
from likeness.rpc_errors import abort
from likeness.v1 import retention_pb2
from retention.audit_log import AuditLog, InvalidPageToken

Context = grpc.aio.ServicerContext[object, object]
#: The export's scope: a tenant-level token with it reads the log for the export (`processing_log.json`).
EXPORT_SCOPE = "subjects:export"


class AuditMethods:
    """The audit half of `RetentionServicer` (which provides `audit` and `audit_log`)."""

    audit: AuditTrail
    audit_log: AuditLog

    async def ListProcessingLog(
        self, request: retention_pb2.ListProcessingLogRequest, context: Context
    ) -> retention_pb2.ListProcessingLogResponse:
        principal = await require_subject(context, request.tenant, request.subject_id)
        if principal.subject != request.subject_id and EXPORT_SCOPE not in principal.scopes:
            # A tenant-level token is refused, even with `tenant:all`: the log is the person's own account
            # of who touched their data, the tenant's back ends included. Only one that may export the
            # subject gets it, as part of the export (which holds everything held about the person).
            await abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "own_token_required",
                "The processing log is served only to the person's own token.",
            )
        if not ids.is_valid_tenant(request.tenant) or not ids.is_valid_id(request.subject_id, "sub"):
            return retention_pb2.ListProcessingLogResponse()
        if request.for_export and not request.page_token:
            # Retention's own part of the export (the subject record, the consent history, this log) is
            # an access like the other services' parts: recorded once, before it is read out.
            await self.audit.record(
                request.tenant,
                "subject.exported",
                request.subject_id,
                "ok",
                principal=self.audit.principal(principal),
                purpose="export",
            )
        pseudonym = self.audit.subject_hmac(request.tenant, request.subject_id)
        try:
            entries, token = await self.audit_log.of_person(
                request.tenant, pseudonym, request.page_token, request.page_size
            )
        except InvalidPageToken:
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "invalid_page_token", "Invalid page token."
            )
        return retention_pb2.ListProcessingLogResponse(entries=entries, next_page_token=token)

    async def ListAuditTrail(
        self, request: retention_pb2.ListAuditTrailRequest, context: Context
    ) -> retention_pb2.ListAuditTrailResponse:
        await require_tenant_wide(context, request.tenant)
        if not ids.is_valid_tenant(request.tenant):
            return retention_pb2.ListAuditTrailResponse()
        try:
            entries, token = await self.audit_log.of_tenant(
                request.tenant, request.page_token, request.page_size
            )
        except InvalidPageToken:
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "invalid_page_token", "Invalid page token."
            )
        return retention_pb2.ListAuditTrailResponse(entries=entries, next_page_token=token)
