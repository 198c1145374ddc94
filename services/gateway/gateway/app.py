"""The gateway application: `create_app(settings)` wires settings, auth, backends, errors and routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.auth import TokenVerifier
from gateway.backends import Backends
from gateway.config import GatewaySettings, get_settings
from gateway.errors import install_error_handlers
from gateway.metrics import Metrics
from gateway.middleware import RequestMiddleware
from gateway.routes import erasures, health, photos, renders, styles, subjects, trainings

DESCRIPTION = """\
Likeness turns a person's selfies into AI headshots and forgets them on request.

Every call needs a bearer token (JWT) with the route's scope. Errors always look like
`{"error": {"code": "<machine_code>", "message": "<for humans>"}}`; anything a token may not see answers
404 `not_found`, exactly like something that does not exist.
"""


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Kept on app.state (not lifespan state) so tests that drive the lifespan themselves see it too.
        app.state.backends = Backends.connect(settings)
        try:
            yield
        finally:
            await app.state.backends.close()

    app = FastAPI(
        title="Likeness",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # The interactive docs load scripts from a CDN: development only. /openapi.json is always served.
        docs_url=None if settings.is_production else "/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier(settings)
    app.state.metrics = Metrics()
    install_error_handlers(app)
    app.add_middleware(RequestMiddleware, metrics=app.state.metrics)
    for module in (subjects, photos, trainings, renders, styles, erasures, health):
        app.include_router(module.router)
    return app
