"""Erasure receipts."""

from __future__ import annotations

from fastapi import APIRouter

from gateway import access, convert, schemas
from gateway.contract import answers
from gateway.deps import Backends, SubjectsErase
from gateway.errors import not_found
from likeness.v1 import retention_pb2

router = APIRouter(tags=["subjects"])


@router.get(
    "/v1/erasures/{erasure_id}",
    summary="Read an erasure record (its progress and facts)",
    description="Scope `subjects:erase`. The signed receipt: `GET /v1/erasures/{id}/receipt`.",
    responses=answers("not_found"),
)
async def get_erasure(erasure_id: str, principal: SubjectsErase, backends: Backends) -> schemas.Erasure:
    access.require_id(erasure_id, "era")
    if principal.subject is not None:
        # The receipt names its subject only as a keyed HMAC; the subject's record names its erasure.
        subject = await access.subject_record(backends, principal, principal.subject)
        if subject.erasure_id != erasure_id:
            raise not_found()
    request = retention_pb2.GetErasureRequest(tenant=principal.tenant, erasure_id=erasure_id)
    erasure = (
        await access.hide_missing(backends.retention.GetErasure(request, timeout=backends.timeout))
    ).erasure
    return convert.erasure(erasure)
