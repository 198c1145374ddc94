"""A SERVER span around every HTTP request of an ASGI app (the gateway), in a new trace of our own.

The edge trusts nothing of the caller's trace context. Each request starts a *new* trace (a root span), and
a valid W3C `traceparent` from the caller becomes a span *link* on it, not its parent: the caller's trace
id never reaches our spans, gRPC metadata or NATS message headers (kept for years), and a caller cannot
join its requests into one trace, pick trace ids, or force recording with its sampled flag. The caller's
`tracestate` and `baggage` are dropped (the link carries none either), and the three headers are removed
from the request before the app sees it, so no later code can copy them anywhere.

Pure ASGI (no framework import, streamed bodies pass through untouched). The span is named and labelled by
method and route template (`POST /v1/subjects/{subject_id}/photos`), never by the path with its ids, and
carries no query, header, client address or body: nothing personal goes into a trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_tracer = trace.get_tracer("likeness.http")
#: Any other method is named "other", so a client cannot mint span names.
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
#: Headers of the caller's trace context: read (traceparent, for the link) and then removed from the request.
CALLER_CONTEXT_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})
_TRACEPARENT = b"traceparent"
_traceparent_format = TraceContextTextMapPropagator()


def caller_link(headers: list[tuple[bytes, bytes]]) -> Link | None:
    """A link to the caller's span from its one valid `traceparent`, with no tracestate; None otherwise
    (none given, malformed, or several: W3C says a receiver then ignores them)."""
    values = [value for key, value in headers if key.lower() == _TRACEPARENT]
    if len(values) != 1:
        return None
    extracted = _traceparent_format.extract({"traceparent": values[0].decode("latin-1")})
    caller = trace.get_current_span(extracted).get_span_context()
    if not caller.is_valid:
        return None
    # A fresh SpanContext: the caller's tracestate (anything it likes) is not carried into the link.
    return Link(SpanContext(caller.trace_id, caller.span_id, is_remote=True, trace_flags=caller.trace_flags))


def without_caller_context(scope: Scope) -> Scope:
    """The request's scope without the caller's trace context headers (the same scope when it had none)."""
    headers = scope.get("headers", ())
    kept = [(key, value) for key, value in headers if key.lower() not in CALLER_CONTEXT_HEADERS]
    if len(kept) == len(headers):
        return scope
    return {**scope, "headers": kept}


class TracingMiddleware:
    """`tracer`: where spans go (the global provider's unless a test passes its own)."""

    def __init__(self, app: ASGIApp, tracer: Tracer | None = None) -> None:
        self.app = app
        self.tracer = tracer or _tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _METHODS else "other"
        link = caller_link(list(scope.get("headers", ())))
        inner = without_caller_context(scope)
        status = 500
        with self.tracer.start_as_current_span(
            method,
            context=Context(),  # a new trace: nothing of the caller's context is its parent
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
            links=[link] if link is not None else (),
            record_exception=False,  # exception messages may quote input
            set_status_on_exception=False,
        ) as span:

            async def send_and_note_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await self.app(inner, receive, send_and_note_status)
            finally:
                route = getattr(inner.get("route"), "path", None)
                if isinstance(route, str):
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
