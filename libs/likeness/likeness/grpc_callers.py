"""Caller authorization per gRPC method: which peer identities may call which method of a service.

Each service declares its table next to its servicer (`<service>.callers.CALLERS`, built with
`caller_table`: every method of the service named once, so a new method cannot ship undecided), and
`likeness.grpc_server.GrpcServer` enforces it with `CallerInterceptor` for every call, from the identity in
the caller's TLS certificate (`peer_identity`). Anything else is refused with PERMISSION_DENIED: another
identity, a certificate without our SPIFFE ID, a method missing from the table, a method the server does
not serve (deny by default, instead of gRPC's UNIMPLEMENTED). Each refusal is logged, counted and handed to
a sink (the runtime writes it to the audit trail: `likeness.audit.CallAudit`).

A caller without a certificate of our CA never gets this far: the TLS handshake refuses it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from prometheus_client import Counter

from likeness.grpc_tls import identity_of_spiffe_id
from likeness.rpc_errors import abort

if TYPE_CHECKING:  # grpc's classes are generic only in its type stubs
    Handler = grpc.RpcMethodHandler[Any, Any]
    Context = grpc.aio.ServicerContext[Any, Any]
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    Context = grpc.aio.ServicerContext
    _ServerInterceptor = grpc.aio.ServerInterceptor

log = logging.getLogger(__name__)

# The identities: one per process kind (and the provisioning job).
GATEWAY = "gateway"
RETENTION = "retention"
INGEST = "ingest"
TRAINER = "trainer"
TRAINER_WORKER = "trainer-worker"
RENDERER = "renderer"
RENDERER_WORKER = "renderer-worker"
BOOTSTRAP = "bootstrap"
IDENTITIES = frozenset(
    {GATEWAY, RETENTION, INGEST, TRAINER, TRAINER_WORKER, RENDERER, RENDERER_WORKER, BOOTSTRAP}
)
#: What a refusal names when the certificate carries no identity of ours, or the method is not ours.
UNIDENTIFIED = "unidentified"
UNKNOWN_METHOD = "unknown"
#: The machine code of a refusal by caller authorization (`likeness.rpc_errors`).
CALLER_NOT_ALLOWED = "caller_not_allowed"

#: Full method name ("/likeness.v1.IngestService/ExportPhotos") -> the identities that may call it.
CallerTable = Mapping[str, frozenset[str]]
#: Told of each refused call: (the caller's identity or UNIDENTIFIED, the method or UNKNOWN_METHOD).
DeniedCallSink = Callable[[str, str], Awaitable[None]]

HEALTH_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
REFLECTION_METHODS = frozenset(
    {
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)

DENIED = Counter(
    "likeness_grpc_calls_denied",
    "gRPC calls refused by caller authorization, by method and caller identity",
    ["grpc_method", "peer"],
)


def full_method_names(service: ServiceDescriptor) -> list[str]:
    return [f"/{service.full_name}/{method.name}" for method in service.methods]


def caller_table(service: ServiceDescriptor, callers: Mapping[str, Collection[str]]) -> CallerTable:
    """The table of one service from `{method name: identities}`; every method must be named exactly once
    (an empty collection: nobody may call it), and only our identities."""
    methods = {method.name for method in service.methods}
    missing, unknown = sorted(methods - set(callers)), sorted(set(callers) - methods)
    if missing or unknown:
        raise ValueError(f"{service.full_name}: callers undecided for {missing}, not methods: {unknown}")
    for name, identities in callers.items():
        strangers = sorted(set(identities) - IDENTITIES)
        if strangers:
            raise ValueError(f"{service.full_name}/{name}: not identities: {strangers}")
    return {f"/{service.full_name}/{name}": frozenset(identities) for name, identities in callers.items()}


def peer_identity(context: Context) -> str | None:
    """The caller's identity from its verified TLS certificate (its SPIFFE ID), or None."""
    values = list(context.auth_context().get("peer_spiffe_id", ()))
    if len(values) != 1:
        return None
    raw = values[0]
    return identity_of_spiffe_id(raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw))


Behavior = Callable[..., Any]


class CallerInterceptor(_ServerInterceptor):
    """Admits a call only if the caller's identity is in the method's row of the table.

    `open_methods` answer any identity of ours (health, and reflection in development): they reveal
    nothing of a person. Install it first, ahead of telemetry: a refused call never reaches the rest.
    """

    def __init__(
        self,
        callers: CallerTable,
        open_methods: Collection[str] = (),
        on_denied: DeniedCallSink | None = None,
    ) -> None:
        self._callers = dict(callers)
        self._open = frozenset(open_methods)
        self._on_denied = on_denied

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None:  # not a method of this server: its name is the caller's text, never recorded
            return grpc.stream_stream_rpc_method_handler(self._refuse_unknown)
        if method in self._open:
            return _guard(handler, lambda identity: identity is not None, self._deny, method)
        allowed = self._callers.get(method, frozenset())
        return _guard(handler, lambda identity: identity in allowed, self._deny, method)

    async def _refuse_unknown(self, requests: Any, context: Context) -> AsyncIterator[Any]:
        await self._deny(context, peer_identity(context), UNKNOWN_METHOD)
        yield  # pragma: no cover - never reached: _deny aborts

    async def _deny(self, context: Context, identity: str | None, method: str) -> None:
        peer = identity if identity in IDENTITIES else UNIDENTIFIED
        DENIED.labels(method, peer).inc()
        log.warning("gRPC call refused", extra={"grpc_method": method, "peer": peer})
        if self._on_denied is not None:
            try:
                await self._on_denied(peer, method)
            except Exception:  # the refusal stands whether or not its record could be written
                log.exception("refused call not audited", extra={"grpc_method": method, "peer": peer})
        await abort(
            context, grpc.StatusCode.PERMISSION_DENIED, CALLER_NOT_ALLOWED, "this caller may not call this"
        )


Admits = Callable[[str | None], bool]
Deny = Callable[[Context, str | None, str], Awaitable[None]]


def _guard(handler: Handler, admits: Admits, deny: Deny, method: str) -> Handler:
    """The handler with the caller check in front of its behavior (before a request stream is read)."""

    async def check(context: Context) -> None:
        identity = peer_identity(context)
        if not admits(identity):
            await deny(context, identity, method)

    def unary_response(behavior: Behavior) -> Behavior:
        async def guarded(request: Any, context: Context) -> Any:
            await check(context)
            return await behavior(request, context)

        return guarded

    def stream_response(behavior: Behavior) -> Behavior:
        if not inspect.isasyncgenfunction(behavior):
            return unary_response(behavior)  # writes with context.write and returns None

        async def guarded(request: Any, context: Context) -> AsyncIterator[Any]:
            await check(context)
            async for item in behavior(request, context):
                yield item

        return guarded

    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary_response(handler.unary_unary), **serializers)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream_response(handler.unary_stream), **serializers)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary_response(handler.stream_unary), **serializers)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(stream_response(handler.stream_stream), **serializers)
    raise TypeError(f"{method}: a handler without a behavior")
