"""The tenant's GPU quotas and what it uses of them (issue 18): an operator's view, never a person's.

The trainer and the renderer each report their own kind of job (in flight: counted from its work queue)
and the tenant's GPU-seconds of the UTC day (`likeness.quotas`); the gateway asks both at once. Needs
`usage:read` on a tenant-wide token; it names no subject.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter

from gateway import schemas
from gateway.deps import Backends, UsageRead
from gateway.errors import ApiError
from likeness.quota_policy import seconds_to_utc_midnight
from likeness.user_tokens import TENANT_WIDE_SCOPE
from likeness.v1 import renderer_pb2, trainer_pb2

router = APIRouter(tags=["usage"])


@router.get(
    "/v1/usage",
    summary="The tenant's GPU work against its quotas: trainings and renders in flight, GPU-seconds today",
    description=f"Scope `usage:read` on a tenant-wide token (`{TENANT_WIDE_SCOPE}`, no `sub`). A submission "
    "past a quota is refused with 429 `quota_exceeded`, `error.quota` naming it.",
)
async def usage(principal: UsageRead, backends: Backends) -> schemas.Usage:
    if not principal.tenant_wide:
        raise ApiError(403, "insufficient_scope", f"Usage needs a tenant-wide token ({TENANT_WIDE_SCOPE}).")
    trainings, renders = await asyncio.gather(
        backends.trainer.GetTrainingUsage(
            trainer_pb2.GetTrainingUsageRequest(tenant=principal.tenant), timeout=backends.timeout
        ),
        backends.renderer.GetRenderUsage(
            renderer_pb2.GetRenderUsageRequest(tenant=principal.tenant), timeout=backends.timeout
        ),
    )
    training, render = trainings.usage, renders.usage
    return schemas.Usage(
        trainings=schemas.JobUsage(in_flight=training.jobs_in_flight, limit=training.max_jobs_in_flight),
        renders=schemas.JobUsage(in_flight=render.jobs_in_flight, limit=render.max_jobs_in_flight),
        gpu_seconds=schemas.GpuUsage(
            day=training.day,
            seconds=training.gpu_seconds_today,
            limit=training.max_gpu_seconds_per_day,
            resets_in_seconds=seconds_to_utc_midnight(datetime.now(UTC)),
        ),
        max_training_steps=training.max_training_steps,
    )
