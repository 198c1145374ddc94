"""Liveness, readiness (all four backends SERVING) and Prometheus metrics."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Request, Response

from gateway import schemas
from gateway.deps import Backends
from gateway.errors import ApiError, error_responses
from gateway.metrics import Metrics

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> schemas.Health:
    return schemas.Health(status="ok")


@router.get(
    "/readyz",
    summary="Every backend answers its health check with SERVING",
    responses={503: error_responses(503)[503]},
)
async def readyz(backends: Backends) -> schemas.Readiness:
    states = await backends.readiness()
    down = sorted(name for name, serving in states.items() if not serving)
    if down:
        raise ApiError(503, "not_ready", f"Not serving: {', '.join(down)}.")
    return schemas.Readiness(status="ready", backends=states)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    registry = cast(Metrics, request.app.state.metrics)
    return Response(registry.render(), media_type=registry.content_type)
