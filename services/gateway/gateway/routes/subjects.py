"""Subjects: open one (with consent), list the tenant's, read one, erase one."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response
from google.protobuf.timestamp_pb2 import Timestamp

from gateway import access, convert, schemas
from gateway.contract import answers, header
from gateway.deps import Backends, Idempotent, Jobs, Live, SubjectsErase, SubjectsRead, SubjectsWrite
from gateway.errors import ApiError, subject_erased
from gateway.paging import Limit, SubjectCursor, decode_cursor, next_cursor
from likeness.v1 import retention_pb2

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])


@router.post(
    "",
    status_code=201,
    summary="Open a subject (a person) with their consent",
    description="Scope `subjects:write`; not with an end user's token. Accepts `Idempotency-Key`. The "
    "consent's purpose is one of `headshots`, `team_look`, `instant`: it becomes the subject's first grant "
    "(unless the tenant's consent policy takes grants only from the person's own token).",
    responses={
        **answers("invalid_consent", "invalid_purpose", "invalid_policy_version"),
        201: {"headers": header("Location")},
    },
)
async def create_subject(
    body: schemas.CreateSubjectRequest,
    principal: SubjectsWrite,
    claim: Idempotent,
    backends: Backends,
    response: Response,
) -> schemas.Subject:
    if principal.subject is not None:
        raise ApiError(403, "insufficient_scope", "An end-user token cannot open subjects.")
    given_at = Timestamp()
    given_at.FromDatetime(datetime.now(UTC))
    request = retention_pb2.OpenSubjectRequest(
        tenant=principal.tenant,
        external_ref=body.external_ref or "",
        consent=retention_pb2.Consent(
            purpose=body.consent.purpose, policy_version=body.consent.policy_version, given_at=given_at
        ),
    )
    subject = (await backends.retention.OpenSubject(request, timeout=backends.timeout)).subject
    if claim is not None:
        # The stored answer names the new subject: it goes when the subject is erased.
        claim.subject = subject.id
        await claim.index()
    response.headers["Location"] = f"/v1/subjects/{subject.id}"
    return convert.subject(subject)


@router.get(
    "",
    summary="List the tenant's subjects (newest first, erased ones omitted)",
    description="Scope `subjects:read`; not with an end user's token (it sees only its own subject).",
)
async def list_subjects(
    principal: SubjectsRead, backends: Backends, limit: Limit = 50, cursor: SubjectCursor = None
) -> schemas.SubjectList:
    if principal.subject is not None:
        raise ApiError(403, "insufficient_scope", "An end-user token cannot list subjects.")
    request = retention_pb2.ListSubjectsRequest(
        tenant=principal.tenant, page_size=limit, page_token=decode_cursor(cursor, "sub")
    )
    page = await backends.retention.ListSubjects(request, timeout=backends.timeout)
    return schemas.SubjectList(
        subjects=[convert.subject(subject) for subject in page.subjects],
        next_cursor=next_cursor(page.next_page_token),
    )


@router.get(
    "/{subject_id}",
    summary="Read a subject",
    description="Scope `subjects:read`.",
    responses=answers("not_found", "subject_erased"),
)
async def get_subject(subject_id: str, principal: SubjectsRead, backends: Backends) -> schemas.Subject:
    subject = await access.subject_record(backends, principal, subject_id)
    if subject.status in (retention_pb2.SUBJECT_STATUS_ERASING, retention_pb2.SUBJECT_STATUS_ERASED):
        raise subject_erased()
    return convert.subject(subject)


@router.delete(
    "/{subject_id}",
    status_code=202,
    summary="Erase a subject: their key is destroyed first, then every object, record and event",
    description="Scope `subjects:erase`. Erasing a subject again answers the same 202 with the erasure "
    "under way or done (and resumes one that stopped), so a caller that lost the first answer still finds "
    "its erasure. Accepts `Idempotency-Key`.",
    responses={**answers("not_found"), 202: {"headers": header("Location")}},
)
async def erase_subject(
    subject_id: str,
    principal: SubjectsErase,
    claim: Idempotent,
    backends: Backends,
    live: Live,
    jobs: Jobs,
    response: Response,
) -> schemas.ErasureAccepted:
    # Not only a live subject: retention answers an erased one with its erasure, which is what a retry needs.
    await access.subject_record(backends, principal, subject_id)
    live.forget(principal.tenant, subject_id)
    jobs.invalidate_subject(principal.tenant, subject_id)
    request = retention_pb2.EraseSubjectRequest(
        tenant=principal.tenant, subject_id=subject_id, cause="request"
    )
    try:
        answer = await backends.retention.EraseSubject(request, timeout=backends.timeout)
        erasure = answer.erasure
    finally:
        # Again once retention marked it: a read that ran meanwhile must not keep "active" for it.
        live.forget(principal.tenant, subject_id)
        jobs.invalidate_subject(principal.tenant, subject_id)
    response.headers["Location"] = f"/v1/erasures/{erasure.id}"
    return schemas.ErasureAccepted(
        erasure_id=erasure.id,
        status=convert.enum_name(retention_pb2.ErasureStatus, erasure.status, "ERASURE_STATUS_"),
        receipt_salt=answer.receipt_salt or None,
    )
