"""Traces and metrics across gRPC: W3C trace context in call metadata, a span per call on each side, and
Prometheus counters of every call a server handles.

- `ServerTelemetryInterceptor` (installed by `likeness.grpc_server.GrpcServer`): continues the caller's trace
  from the `traceparent` metadata, runs the handler inside a SERVER span, and counts the call by service,
  method and status code (`likeness_grpc_server_handled_total`) with its duration.
- `client_interceptors()` (for `grpc.aio.secure_channel(..., interceptors=...)`): a CLIENT span per call and
  its context injected as `traceparent` metadata, so the server's span joins the caller's trace.

Spans and labels carry only service, method and status code: never request fields, ids or peers.
Health checks and reflection are left out (probes would drown the real calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Histogram

if TYPE_CHECKING:  # grpc's classes are generic only in its type stubs
    Handler = grpc.RpcMethodHandler[Any, Any]
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
    _UnaryUnaryInterceptor = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStreamInterceptor = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    _StreamUnaryInterceptor = grpc.aio.StreamUnaryClientInterceptor[Any, Any]
    _StreamStreamInterceptor = grpc.aio.StreamStreamClientInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    _ServerInterceptor = grpc.aio.ServerInterceptor
    _UnaryUnaryInterceptor = grpc.aio.UnaryUnaryClientInterceptor
    _UnaryStreamInterceptor = grpc.aio.UnaryStreamClientInterceptor
    _StreamUnaryInterceptor = grpc.aio.StreamUnaryClientInterceptor
    _StreamStreamInterceptor = grpc.aio.StreamStreamClientInterceptor

_tracer = trace.get_tracer("likeness.grpc")

#: Infrastructure services: not traced, not counted.
_SKIPPED_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
#: Codes that mean the server failed (the others are the caller's doing or normal outcomes).
SERVER_ERROR_CODES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

HANDLED = Counter(
    "likeness_grpc_server_handled",
    "gRPC calls completed by this server, by service, method and status code",
    ["grpc_service", "grpc_method", "grpc_code"],
)
HANDLING_SECONDS = Histogram(
    "likeness_grpc_server_handling_seconds",
    "Time a gRPC call took on this server (for streams: until the last message), by service and method",
    ["grpc_service", "grpc_method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def split_method(full_method: str) -> tuple[str, str]:
    """'/likeness.v1.IngestService/SanitizePhoto' -> ('likeness.v1.IngestService', 'SanitizePhoto')."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service or "unknown", method or "unknown"


def _metadata_carrier(metadata: Any) -> dict[str, str]:
    """The trace headers among a call's metadata (pairs of key and str or bytes value)."""
    carrier: dict[str, str] = {}
    for key, value in metadata or ():
        if key in ("traceparent", "tracestate"):
            carrier[key] = value.decode("latin-1") if isinstance(value, bytes) else value
    return carrier


def _code_of(context: grpc.aio.ServicerContext[Any, Any], failure: BaseException | None) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if failure is None:
        return grpc.StatusCode.OK
    if isinstance(failure, grpc.aio.AbortError):  # aborted without a code we can read: count it as unknown
        return grpc.StatusCode.UNKNOWN
    if isinstance(failure, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


class _ServerCall:
    """One call's span and metrics: started before the handler, ended with its status code."""

    def __init__(self, service: str, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.service = service
        self.method = method
        self.context = context
        parent = propagate.extract(_metadata_carrier(context.invocation_metadata()))
        self.span = _tracer.start_span(
            f"{service}/{method}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": method},
        )
        self.started = time.perf_counter()
        self._token: object | None = None

    def enter(self) -> None:
        self._token = otel_context.attach(trace.set_span_in_context(self.span))

    def leave(self) -> None:
        if self._token is not None:
            # Detaching in another context only loses the current span; never fail the call for it.
            with contextlib.suppress(Exception):
                otel_context.detach(self._token)  # type: ignore[arg-type]
            self._token = None

    def end(self, failure: BaseException | None) -> None:
        code = _code_of(self.context, failure)
        HANDLED.labels(self.service, self.method, code.name).inc()
        HANDLING_SECONDS.labels(self.service, self.method).observe(time.perf_counter() - self.started)
        self.span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code in SERVER_ERROR_CODES:
            self.span.set_status(Status(StatusCode.ERROR, code.name))
        self.span.end()


Behavior = Callable[..., Any]


def _wrap_unary_response(behavior: Behavior, service: str, method: str) -> Behavior:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = _ServerCall(service, method, context)
        call.enter()
        try:
            response = await behavior(request, context)
        except BaseException as failure:
            call.end(failure)
            raise
        finally:
            call.leave()
        call.end(None)
        return response

    return wrapped


def _wrap_stream_response(behavior: Behavior, service: str, method: str) -> Behavior:
    if not inspect.isasyncgenfunction(behavior):
        return _wrap_unary_response(behavior, service, method)  # writes with context.write, returns None

    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        call = _ServerCall(service, method, context)
        failure: BaseException | None = None
        try:
            call.enter()
            try:
                async for item in behavior(request, context):
                    call.leave()  # never hold the span across a yield: the consumer may be elsewhere
                    yield item
                    call.enter()
            finally:
                call.leave()
        except BaseException as exc:
            failure = exc
            raise
        finally:
            call.end(failure)

    return wrapped


def _wrap_handler(handler: Handler, service: str, method: str) -> Handler:
    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary_response(handler.unary_unary, service, method), **serializers
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream_response(handler.unary_stream, service, method), **serializers
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary_response(handler.stream_unary, service, method), **serializers
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream_response(handler.stream_stream, service, method), **serializers
        )
    return handler


class ServerTelemetryInterceptor(_ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        service, method = split_method(handler_call_details.method)
        if handler is None or service in _SKIPPED_SERVICES:
            return handler
        return _wrap_handler(handler, service, method)


# ---------------------------------------------------------------------------------------------- client


def _with_trace_context(details: grpc.aio.ClientCallDetails, span: trace.Span) -> grpc.aio.ClientCallDetails:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    metadata = grpc.aio.Metadata(*(tuple(details.metadata) if details.metadata else ()))
    for key, value in carrier.items():
        metadata[key] = value
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout,
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _ClientTracing:
    """A CLIENT span from the call's start to its end, its context sent as `traceparent` metadata."""

    async def _intercept(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
        service, name = split_method(method)
        if service in _SKIPPED_SERVICES:
            return await continuation(details, request)
        span = _tracer.start_span(
            f"{service}/{name}",
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        try:
            call = await continuation(_with_trace_context(details, span), request)
        except BaseException:
            span.set_status(Status(StatusCode.ERROR))
            span.end()
            raise

        def finished(done: grpc.aio.Call) -> None:
            # Called by grpc on the event loop once the call is over; its code is read without blocking.
            task = asyncio.get_running_loop().create_task(_end_client_span(span, done))
            _ending.add(task)
            task.add_done_callback(_ending.discard)

        call.add_done_callback(finished)
        return call


#: Tasks ending client spans (kept referenced until they finish).
_ending: set[asyncio.Task[None]] = set()


async def _end_client_span(span: trace.Span, call: grpc.aio.Call) -> None:
    try:
        code = await call.code()
    except Exception:
        code = grpc.StatusCode.UNKNOWN
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in SERVER_ERROR_CODES:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


class _UnaryUnary(_ClientTracing, _UnaryUnaryInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._intercept(continuation, client_call_details, request)


class _UnaryStream(_ClientTracing, _UnaryStreamInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._intercept(continuation, client_call_details, request)


class _StreamUnary(_ClientTracing, _StreamUnaryInterceptor):
    async def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await self._intercept(continuation, client_call_details, request_iterator)


class _StreamStream(_ClientTracing, _StreamStreamInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: Callable[..., Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await self._intercept(continuation, client_call_details, request_iterator)


def client_interceptors() -> list[Any]:
    """One interceptor per call shape (grpc.aio picks by type): trace context on every outgoing call.

    Typed loosely: grpc-stubs declares `ClientInterceptor` as a partial stub that nothing satisfies."""
    return [_UnaryUnary(), _UnaryStream(), _StreamUnary(), _StreamStream()]
