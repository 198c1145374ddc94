"""The tenant's retention policy, erasure receipts, and the public keys that verify them."""

from __future__ import annotations

import json

from fastapi import APIRouter

from gateway import access, convert, schemas
from gateway.contract import answers
from gateway.deps import Backends, RetentionRead, RetentionWrite, SubjectsErase
from gateway.errors import ApiError, not_found
from likeness.v1 import retention_pb2

router = APIRouter(tags=["retention"])


def _tenant_only(subject: str | None) -> None:
    if subject is not None:
        raise ApiError(403, "insufficient_scope", "An end-user token cannot read or change tenant policy.")


@router.get(
    "/v1/retention-policy",
    summary="The tenant's retention schedule (its own or the defaults), also in words",
    description="Scope `retention:read`; not with an end user's token.",
)
async def get_retention_policy(principal: RetentionRead, backends: Backends) -> schemas.RetentionPolicy:
    _tenant_only(principal.subject)
    request = retention_pb2.GetRetentionPolicyRequest(tenant=principal.tenant)
    return convert.retention_policy(
        await backends.retention.GetRetentionPolicy(request, timeout=backends.timeout)
    )


@router.put(
    "/v1/retention-policy",
    summary="Set the tenant's retention schedule (for subjects opened from now on)",
    description="Scope `retention:write`; not with an end user's token. Days of 0 mean the service "
    "default; every period is capped by the legal hard cap. Idempotent by nature (PUT).",
    responses=answers("invalid_schedule"),
)
async def put_retention_policy(
    body: schemas.RetentionScheduleIn, principal: RetentionWrite, backends: Backends
) -> schemas.RetentionPolicy:
    _tenant_only(principal.subject)
    schedule = retention_pb2.RetentionSchedule(**body.model_dump())
    request = retention_pb2.SetRetentionPolicyRequest(tenant=principal.tenant, schedule=schedule)
    await backends.retention.SetRetentionPolicy(request, timeout=backends.timeout)
    read = retention_pb2.GetRetentionPolicyRequest(tenant=principal.tenant)
    return convert.retention_policy(
        await backends.retention.GetRetentionPolicy(read, timeout=backends.timeout)
    )


@router.get(
    "/v1/erasures/{erasure_id}/receipt",
    summary="The signed receipt of a completed erasure (verify it with GET /v1/receipt-keys)",
    description="Scope `subjects:erase`. 404 `not_found` until the erasure has completed.",
    responses=answers("not_found"),
)
async def get_erasure_receipt(
    erasure_id: str, principal: SubjectsErase, backends: Backends
) -> schemas.ErasureReceipt:
    access.require_id(erasure_id, "era")
    if principal.subject is not None:
        subject = await access.subject_record(backends, principal, principal.subject)
        if subject.erasure_id != erasure_id:
            raise not_found()
    request = retention_pb2.GetErasureReceiptRequest(tenant=principal.tenant, erasure_id=erasure_id)
    response = await access.hide_missing(
        backends.retention.GetErasureReceipt(request, timeout=backends.timeout)
    )
    return schemas.ErasureReceipt.model_validate(json.loads(response.receipt_json))


@router.get(
    "/v1/receipt-keys",
    summary="The public keys (JWK set) that verify erasure receipts",
    description="Public: no token needed, so anyone holding a receipt can verify it.",
    responses=answers("unavailable"),
)
async def get_receipt_keys(backends: Backends) -> schemas.ReceiptKeys:
    response = await backends.retention.GetReceiptKeys(
        retention_pb2.GetReceiptKeysRequest(), timeout=backends.timeout
    )
    return schemas.ReceiptKeys.model_validate(json.loads(response.jwks_json))
