"""Liveness and readiness (all four backends SERVING, NATS connected). Prometheus metrics are served on
the metrics port (`LIKENESS_METRICS_PORT`), not here."""

from __future__ import annotations

from fastapi import APIRouter

from gateway import schemas
from gateway.deps import Backends, Nats
from gateway.errors import ApiError, error_responses

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> schemas.Health:
    return schemas.Health(status="ok")


@router.get(
    "/readyz",
    summary="Every backend answers its health check with SERVING",
    responses={503: error_responses(503)[503]},
)
async def readyz(backends: Backends, nats: Nats) -> schemas.Readiness:
    states = await backends.readiness()
    states["nats"] = nats.connected()
    down = sorted(name for name, serving in states.items() if not serving)
    if down:
        raise ApiError(503, "not_ready", f"Not serving: {', '.join(down)}.")
    return schemas.Readiness(status="ready", backends=states)
