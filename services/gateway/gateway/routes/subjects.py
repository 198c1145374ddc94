"""Subjects: open one (with consent), read it, erase it."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response
from google.protobuf.timestamp_pb2 import Timestamp

from gateway import access, convert, schemas
from gateway.deps import Backends, SubjectsErase, SubjectsRead, SubjectsWrite
from gateway.errors import ApiError, error_responses, subject_erased
from likeness.v1 import retention_pb2

router = APIRouter(prefix="/v1/subjects", tags=["subjects"])


@router.post(
    "",
    status_code=201,
    summary="Open a subject (a person) with their consent",
    responses=error_responses(400, 429),
)
async def create_subject(
    body: schemas.CreateSubjectRequest, principal: SubjectsWrite, backends: Backends, response: Response
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
    response.headers["Location"] = f"/v1/subjects/{subject.id}"
    return convert.subject(subject)


@router.get("/{subject_id}", summary="Read a subject", responses=error_responses(404, 410))
async def get_subject(subject_id: str, principal: SubjectsRead, backends: Backends) -> schemas.Subject:
    subject = await access.subject_record(backends, principal, subject_id)
    if subject.status in (retention_pb2.SUBJECT_STATUS_ERASING, retention_pb2.SUBJECT_STATUS_ERASED):
        raise subject_erased()
    return convert.subject(subject)


@router.delete(
    "/{subject_id}",
    status_code=202,
    summary="Erase a subject: their key is destroyed first, then every object, record and event",
    responses=error_responses(404, 410),
)
async def erase_subject(
    subject_id: str, principal: SubjectsErase, backends: Backends, response: Response
) -> schemas.ErasureAccepted:
    await access.live_subject(backends, principal, subject_id)
    request = retention_pb2.EraseSubjectRequest(
        tenant=principal.tenant, subject_id=subject_id, cause="request"
    )
    erasure = (await backends.retention.EraseSubject(request, timeout=backends.timeout)).erasure
    response.headers["Location"] = f"/v1/erasures/{erasure.id}"
    return schemas.ErasureAccepted(
        erasure_id=erasure.id,
        status=convert.enum_name(retention_pb2.ErasureStatus, erasure.status, "ERASURE_STATUS_"),
    )
