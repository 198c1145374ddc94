"""Liveness and readiness (all four backends SERVING, NATS connected). Prometheus metrics are served on
the metrics port (`LIKENESS_METRICS_PORT`), not here."""

from __future__ import annotations

from fastapi import APIRouter

from gateway import schemas
from gateway.contract import answers
from gateway.deps import Backends, Nats
from gateway.errors import RETRY_AFTER_UNAVAILABLE, ApiError

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> schemas.Health:
    return schemas.Health(status="ok")


@router.get(
    "/readyz",
    summary="Every backend answers its health check with SERVING",
    responses=answers("not_ready"),
)
async def readyz(backends: Backends, nats: Nats) -> schemas.Readiness:
    states = await backends.readiness()
    states["nats"] = nats.connected()
    down = sorted(name for name, serving in states.items() if not serving)
    if down:
        raise ApiError(
            503,
            "not_ready",
            f"Not serving: {', '.join(down)}.",
            headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)},
        )
    return schemas.Readiness(status="ready", backends=states)
