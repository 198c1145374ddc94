"""The gateway application: `create_app(settings)` wires settings, auth, backends, errors and routes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response

from gateway.access import LiveSubjects
from gateway.auth import TokenVerifier
from gateway.backends import Backends
from gateway.config import GatewaySettings, get_settings
from gateway.contract import document_answers
from gateway.edge import EdgeGuard
from gateway.edge_routes import RouteTable
from gateway.errors import install_error_handlers
from gateway.idempotency import REPLAYED_HEADER, Replay
from gateway.job_cache import JobCache
from gateway.metrics import Metrics
from gateway.middleware import RequestMiddleware
from gateway.nats_link import NatsLink
from gateway.ratelimit import Limits, Rate, RateLimiter
from gateway.ratelimit_sync import RateLimitSync
from gateway.routes import (
    audit,
    consents,
    deletions,
    erasures,
    events,
    export,
    health,
    looks,
    photos,
    rectification,
    renders,
    retention,
    styles,
    subjects,
    summary,
    trainings,
    usage,
)
from likeness.http_tracing import TracingMiddleware
from likeness.telemetry import MetricsServer

DESCRIPTION = """\
Likeness turns a person's selfies into AI headshots and forgets them on request.

**Authentication.** Every call needs a bearer token (JWT) with the route's scope (see each route);
tokens carry `tenant`, `scope` (space-separated) and, for an end user's token, `sub` = their own subject.
Anything a token may not see answers 404 `not_found`, exactly like something that does not exist.

**Errors** always look like `{"error": {"code": "<machine_code>", "message": "<for humans>",
"request_id": "..."}}`. Every response carries `X-Request-Id` (yours, if you sent a valid one).

**Lists** are paged by cursor: `?limit=1..100` (default 50) and `?cursor=` from the previous page's
`next_cursor` (null on the last page).

**Links.** An answer's `links` name the operations that follow from it (a subject leads to its photos,
trainings, renders and erasure; a training to renders from it; a render to its images), with the ids to
pass. A method a path does not have answers 405 with `Allow` naming those it has.

**Retries.** Send `Idempotency-Key` with a POST (or a subject DELETE) to make a retry safe. 429
(`rate_limited`, `too_many_streams`, `too_many_exports`) and 503 (`unavailable`, `overloaded`) come with
`Retry-After` (seconds).

**Limits.** Bodies are limited per route (JSON: 64 KiB by default) and refused with 413 before they are
read; a request without a valid token never has its body read. Rates are limited per caller (an end
user, or a tenant's back end by its token's client) under a total per tenant.

**Progress.** `GET /v1/trainings/{id}/events` and `GET /v1/renders/{id}/events` stream Server-Sent
Events: `progress` (the resource as its GET returns it) on every change, then `end` with the final state.
"""


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Kept on app.state (not lifespan state) so tests that drive the lifespan themselves see it too.
        app.state.backends = Backends.connect(settings)
        rate_sync: RateLimitSync | None = None
        if settings.rate_limit_sync:
            rate_sync = RateLimitSync(
                app.state.rate_limiter, settings.rate_limit_sync_seconds, app.state.metrics
            )
            rate_sync.start()
        app.state.nats = NatsLink(settings, app.state.live_subjects, app.state.job_cache, rate_sync)
        app.state.nats.start()
        # /metrics and /healthz on their own port, like every other service: scraping stays off the API port.
        app.state.metrics_listener = MetricsServer(
            settings.metrics_port, ready=lambda: True, registry=app.state.metrics.registry
        )
        await app.state.metrics_listener.start()
        try:
            yield
        finally:
            await app.state.metrics_listener.stop()
            if rate_sync is not None:  # its last report goes out before the connection closes
                await rate_sync.close()
            await app.state.nats.close()
            await app.state.backends.close()

    app = FastAPI(
        title="Likeness",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # The interactive docs load scripts from a CDN: development only. /openapi.json is always served.
        docs_url=None if settings.is_production else "/docs",
        redoc_url=None,
        # FastAPI's own OpenTelemetry spans record url.path and url.query (ids in clear) and its logs quote
        # input values: off. likeness.http_tracing.TracingMiddleware traces requests by route template.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier(settings)
    app.state.metrics = Metrics()
    app.state.live_subjects = LiveSubjects(settings.subject_status_cache_seconds)
    app.state.job_cache = JobCache(settings.job_cache_seconds)
    app.state.rate_limiter = rate_limiter(settings)
    install_error_handlers(app)
    app.add_exception_handler(Replay, _replay)
    modules = (
        trainings,
        renders,
        subjects,
        photos,
        events,
        styles,
        looks,
        erasures,
        retention,
        consents,
        summary,
        audit,
        usage,
        deletions,
        rectification,
        health,
    )
    for module in modules:
        app.include_router(module.router)
    app.include_router(export.router)
    # Innermost of ours: limits weighed from the headers alone, before FastAPI reads a body.
    app.add_middleware(
        EdgeGuard,
        routes=RouteTable.of(app, settings),
        settings=settings,
        verifier=app.state.verifier,
        rate_limiter=app.state.rate_limiter,
        metrics=app.state.metrics,
    )
    app.add_middleware(
        RequestMiddleware,
        metrics=app.state.metrics,
        timeout=settings.request_timeout_seconds,
        log_reads=settings.access_log_reads,
    )
    # Outermost: a span per request, a new trace linked to the caller's traceparent (whose context goes no
    # further), so the access log has its trace id.
    app.add_middleware(TracingMiddleware)
    # Every route's answers in the schema, shared ones included, and the links between operations.
    document_answers(app)
    return app


def rate_limiter(settings: GatewaySettings) -> RateLimiter:
    return RateLimiter(
        {
            "api": Limits(
                caller=Rate(settings.rate_limit_per_second, settings.rate_limit_burst),
                tenant=Rate(settings.tenant_rate_limit_per_second, settings.tenant_rate_limit_burst),
            ),
            "upload": Limits(
                caller=Rate(settings.upload_rate_limit_per_second, settings.upload_rate_limit_burst),
                tenant=Rate(
                    settings.tenant_upload_rate_limit_per_second, settings.tenant_upload_rate_limit_burst
                ),
            ),
        },
        max_tenants=settings.rate_limit_tenants,
        max_callers=settings.rate_limit_callers,
        digest_key=rate_limit_digest_key(settings),
    )


def rate_limit_digest_key(settings: GatewaySettings) -> bytes:
    """The key of the buckets' digests: the replicas' shared idempotency secret, hashed with a purpose
    of its own (a digest on the wire says nothing about an idempotency record id, nor the reverse)."""
    secret = settings.idempotency_secret.get_secret_value().encode()
    return hashlib.sha256(b"likeness.gateway.ratelimit\0" + secret).digest()


async def _replay(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Replay)
    request.app.state.metrics.idempotent_replays.inc()
    stored = exc.response
    return Response(
        stored.body, status_code=stored.status, headers={**stored.headers, REPLAYED_HEADER: "true"}
    )
