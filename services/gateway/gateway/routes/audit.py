"""The audit read API (issue 16, item 2): a person's processing log and a tenant's audit trail.

Retention reads both from the audit stream (`retention.audit_log`) and checks every rule again with the
caller's token; the gateway holds no audit secret and writes no record. The processing log answers only
the person's own token: a tenant-level token gets 403 `own_token_required` for a subject of its tenant
(it may see the subject exists; the log is the person's account of what the tenant's back ends did
too), another person's token or another tenant's 404, as for every subject it may not see. The tenant's
trail needs `audit:read` on a tenant-wide token; its entries name people only by pseudonym.
"""

from __future__ import annotations

from fastapi import APIRouter

from gateway import access, convert, schemas
from gateway.contract import answers
from gateway.deps import AuditRead, Backends, SubjectsRead
from gateway.errors import ApiError
from gateway.paging import AuditCursor, Limit, decode_sequence_cursor, next_cursor
from likeness.user_tokens import TENANT_WIDE_SCOPE
from likeness.v1 import retention_pb2

router = APIRouter(tags=["audit"])


def own_token_required() -> ApiError:
    return ApiError(403, "own_token_required", "The processing log is served only to the person's own token.")


@router.get(
    "/v1/subjects/{subject_id}/processing-log",
    summary="The person's processing log: every access to their data, oldest first",
    description="Scope `subjects:read`, on the person's own token only (`sub` is the subject): what was "
    "done, when, by which principal (`subject`, `tenant[:<client>]`, `service:<identity>`), for which "
    "purpose, with what outcome. A tenant-level token gets 403 `own_token_required` (for a subject of its "
    "tenant): the log is the person's own account, including what the tenant's back ends did. Another "
    "person's token, or another tenant's, gets 404, as for a subject that does not exist (the attempt is "
    "recorded on the person's log as `access.denied`). Status reads (the subject, a training, a render, "
    "listings) are not accesses to personal data and are not in it.",
    responses=answers("not_found", "own_token_required"),
)
async def processing_log(
    subject_id: str,
    principal: SubjectsRead,
    backends: Backends,
    limit: Limit = 50,
    cursor: AuditCursor = None,
) -> schemas.ProcessingLog:
    # First whether the token may see the subject at all (404, as for every subject it may not see), and
    # the person's log stays readable after erasure (it is kept, under their pseudonym only).
    await access.subject_record(backends, principal, subject_id)
    if principal.subject is None:
        raise own_token_required()
    request = retention_pb2.ListProcessingLogRequest(
        tenant=principal.tenant,
        subject_id=subject_id,
        page_size=limit,
        page_token=decode_sequence_cursor(cursor),
    )
    page = await backends.retention.ListProcessingLog(request, timeout=backends.timeout)
    return schemas.ProcessingLog(
        entries=[convert.audit_entry(entry) for entry in page.entries],
        next_cursor=next_cursor(page.next_page_token),
    )


@router.get(
    "/v1/audit",
    summary="The tenant's audit trail, oldest first",
    description=f"Scope `audit:read` on a tenant-wide token (`{TENANT_WIDE_SCOPE}`, no `sub`): every record "
    "of the tenant, people named only by pseudonym (`subject_pseudonym`).",
)
async def audit_trail(
    principal: AuditRead, backends: Backends, limit: Limit = 50, cursor: AuditCursor = None
) -> schemas.ProcessingLog:
    if not principal.tenant_wide:
        raise ApiError(
            403, "insufficient_scope", f"The audit trail needs a tenant-wide token ({TENANT_WIDE_SCOPE})."
        )
    request = retention_pb2.ListAuditTrailRequest(
        tenant=principal.tenant, page_size=limit, page_token=decode_sequence_cursor(cursor)
    )
    page = await backends.retention.ListAuditTrail(request, timeout=backends.timeout)
    return schemas.ProcessingLog(
        entries=[convert.audit_entry(entry) for entry in page.entries],
        next_cursor=next_cursor(page.next_page_token),
    )
