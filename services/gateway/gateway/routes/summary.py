"""The subject summary (transparency): what is held about a person, per category, with counts, bytes, each
item's deletion date and why, the live consent grants and the last access.

Retention computes it (`DescribeHoldings`, from what storage really holds); the gateway only carries the
call with the caller's token: the person's own, or a tenant-level one. Another person's token gets 404, as
for a subject that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from gateway import access, holdings_schemas
from gateway.contract import answers
from gateway.deps import Backends, SubjectsRead
from likeness.v1 import retention_pb2

router = APIRouter(tags=["subjects"])


@router.get(
    "/v1/subjects/{subject_id}/summary",
    summary="What is held about a subject: categories, counts, bytes, each item's deletion date, live "
    "grants, last access",
    description="Scope `subjects:read`: the person's own token or a tenant-level one. Counts and bytes are "
    "what storage holds now (every stored version); `delete_by` of each item is the earliest date a rule "
    "deletes it, and `deletion_rule` names that rule.",
    responses=answers("not_found", "subject_erased"),
)
async def subject_summary(
    subject_id: str, principal: SubjectsRead, backends: Backends
) -> holdings_schemas.SubjectSummary:
    await access.live_subject(backends, principal, subject_id)
    request = retention_pb2.DescribeHoldingsRequest(tenant=principal.tenant, subject_id=subject_id)
    held = await backends.retention.DescribeHoldings(request, timeout=backends.timeout)
    return holdings_schemas.summary(held, datetime.now(UTC))
