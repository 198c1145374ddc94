"""The edge starts a new trace for every request: the caller's `traceparent` becomes a link, never the
parent, and its `tracestate` and `baggage` go nowhere (issue 15). The stack-wide check, through NATS
headers, is `tests/test_single_trace_e2e.py`."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from likeness.http_tracing import Message, Scope, TracingMiddleware

CALLER_TRACE = secrets.token_hex(16)
CALLER_SPAN = secrets.token_hex(8)
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
TRACESTATE = "vendor=caller-chosen-state"
BAGGAGE = "user.email=someone%40example.com"
#: Both propagators, as a library default would have them: what the request's own calls would send on.
EVERYTHING = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])


class Seen:
    """What the app behind the middleware saw: its headers, its span, and what it would propagate."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.span_context: trace.SpanContext | None = None
        self.outgoing: dict[str, str] = {}
        self.baggage: dict[str, object] = {}

    async def app(self, scope: Scope, receive: Any, send: Any) -> None:
        self.headers = list(scope["headers"])
        self.span_context = trace.get_current_span().get_span_context()
        EVERYTHING.inject(self.outgoing)
        self.baggage = dict(baggage.get_all())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _request(headers: list[tuple[bytes, bytes]]) -> tuple[Seen, ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    seen = Seen()
    middleware = TracingMiddleware(seen.app, tracer=provider.get_tracer("test"))
    scope: Scope = {"type": "http", "method": "GET", "path": "/v1/styles", "headers": headers}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    asyncio.run(middleware(scope, receive, send))
    [span] = exporter.get_finished_spans()
    return seen, span


def _caller_headers() -> list[tuple[bytes, bytes]]:
    return [
        (b"traceparent", TRACEPARENT.encode()),
        (b"tracestate", TRACESTATE.encode()),
        (b"baggage", BAGGAGE.encode()),
        (b"accept", b"application/json"),
    ]


def test_the_callers_traceparent_is_a_link_not_the_parent() -> None:
    seen, span = _request(_caller_headers())
    assert span.parent is None, "the request's span is a root: a new trace"
    assert f"{span.context.trace_id:032x}" != CALLER_TRACE
    assert seen.span_context is not None
    assert seen.span_context.trace_id == span.context.trace_id, "the app runs in the new trace"
    [link] = span.links
    assert (f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}") == (CALLER_TRACE, CALLER_SPAN)


def test_tracestate_and_baggage_are_dropped() -> None:
    seen, span = _request(_caller_headers())
    [link] = span.links
    assert not link.context.trace_state, "the link carries none of the caller's tracestate"
    assert span.context.trace_state.to_header() == ""
    assert seen.baggage == {}
    assert set(seen.outgoing) == {"traceparent"}, seen.outgoing
    assert CALLER_TRACE not in seen.outgoing["traceparent"]
    sent_on = b"".join(value for _, value in seen.headers)
    assert [key for key, _ in seen.headers] == [b"accept"], "the app never sees the caller's context"
    assert b"caller-chosen-state" not in sent_on
    assert b"someone" not in sent_on


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"traceparent", b"not-a-traceparent")],
        [(b"traceparent", f"00-{'0' * 32}-{CALLER_SPAN}-01".encode())],
        [(b"traceparent", TRACEPARENT.encode()), (b"traceparent", TRACEPARENT.encode())],
        [(b"tracestate", TRACESTATE.encode()), (b"baggage", BAGGAGE.encode())],
    ],
    ids=["none", "malformed", "zero trace id", "two traceparents", "state without a parent"],
)
def test_without_one_valid_traceparent_there_is_no_link(headers: list[tuple[bytes, bytes]]) -> None:
    seen, span = _request(headers)
    assert span.parent is None
    assert span.links == ()
    assert seen.headers == []


def test_the_global_propagator_is_not_consulted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even with baggage propagation configured process-wide, nothing of the caller's is extracted."""
    monkeypatch.setattr(propagate, "_HTTP_TEXT_FORMAT", EVERYTHING)
    seen, span = _request(_caller_headers())
    assert span.parent is None
    assert seen.baggage == {}
    assert "baggage" not in seen.outgoing
