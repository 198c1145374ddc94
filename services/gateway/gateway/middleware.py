"""Around every request: a request id, `Cache-Control: no-store`, metrics, one access log line, and the
envelope for anything unexpected.

A plain ASGI middleware (not `BaseHTTPMiddleware`) so streamed bodies pass through untouched. Log lines
and metrics carry the route template (`/v1/subjects/{subject_id}`), never the path with its ids.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import envelope
from gateway.metrics import Metrics

log = logging.getLogger("gateway.access")

REQUEST_ID_HEADER = "X-Request-Id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdLogFilter(logging.Filter):
    """Adds the current request id to every log record (the JSON formatter prints extra attributes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None:
            record.request_id = request_id
        return True


def install_request_id_logging() -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdLogFilter())


def _request_id(scope: Scope) -> str:
    given = Headers(scope=scope).get(REQUEST_ID_HEADER)
    # A caller's id is kept only if it is harmless in a log line and a header.
    return given if given and _VALID_REQUEST_ID.match(given) else uuid.uuid4().hex


class RequestMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                headers["Cache-Control"] = "no-store"
                headers["X-Content-Type-Options"] = "nosniff"
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception("unhandled error")
            if response_started:
                raise  # mid-stream: the connection is cut, which the client sees as an incomplete body
            await envelope(500, "internal", "Something went wrong on our side.")(
                scope, receive, send_with_headers
            )
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            seconds = time.perf_counter() - started
            self.metrics.observe(scope["method"], route, status, seconds)
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                },
            )
            request_id_var.reset(token)
