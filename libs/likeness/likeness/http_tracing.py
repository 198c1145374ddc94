"""A SERVER span around every HTTP request of an ASGI app (the gateway), continuing the caller's W3C trace.

Pure ASGI (no framework import, streamed bodies pass through untouched). The span is named and labelled by
method and route template (`POST /v1/subjects/{subject_id}/photos`), never by the path with its ids, and
carries no query, header, client address or body: nothing personal goes into a trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_tracer = trace.get_tracer("likeness.http")
#: Any other method is named "other", so a client cannot mint span names.
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})


def _trace_carrier(scope: Scope) -> dict[str, str]:
    return {
        key.decode("latin-1"): value.decode("latin-1")
        for key, value in scope.get("headers", ())
        if key.lower() in _TRACE_HEADERS
    }


class TracingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "other"
        parent = propagate.extract(_trace_carrier(scope))
        status = 500
        with _tracer.start_as_current_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
            record_exception=False,  # exception messages may quote input
            set_status_on_exception=False,
        ) as span:

            async def send_and_note_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_and_note_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if isinstance(route, str):
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
