"""Rectification of what a subject's record holds (`PATCH /v1/subjects/{id}`): the tenant's reference.

Nothing else of the record can be changed here: the tenant, the status, the deadlines and the consent
each have their own rules and routes. Retention stores the reference only as its keyed HMAC and audits
the change (`subject.rectified`).
"""

from __future__ import annotations

from fastapi import APIRouter

from gateway import access, convert, schemas
from gateway.contract import answers
from gateway.deletion_schemas import SubjectRectification
from gateway.deps import Backends, SubjectsWrite
from likeness.v1 import retention_pb2

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])


@router.patch(
    "/{subject_id}",
    summary="Rectify a subject's record: correct (or forget) the tenant's reference for the person",
    description="Scope `subjects:write`. The reference is stored only as a keyed HMAC, so it is never "
    "shown back; `null` forgets it. Audited as `subject.rectified` when it changes.",
    responses=answers("not_found", "subject_erased"),
)
async def rectify_subject(
    subject_id: str, body: SubjectRectification, principal: SubjectsWrite, backends: Backends
) -> schemas.Subject:
    await access.live_subject(backends, principal, subject_id)
    request = retention_pb2.RectifySubjectRequest(
        tenant=principal.tenant,
        subject_id=subject_id,
        external_ref=body.external_ref or "",
        clear_external_ref=body.external_ref is None,
    )
    answer = await access.hide_missing(backends.retention.RectifySubject(request, timeout=backends.timeout))
    return convert.subject(answer.subject)
