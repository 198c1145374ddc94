"""The end user's token travels with every gRPC call, and the service that receives it verifies it again.

- Client side (the gateway): `forward_user_token(token)` records the caller's bearer token for the request
  being handled (a context variable, so concurrent requests never mix), and `user_token_interceptors()`
  (on each backend channel) sends it as `authorization: Bearer <token>` metadata on every call made while
  handling it.
- Server side (every service): `UserTokenInterceptor` looks the method up in the service's table
  (`likeness.method_access`), verifies the token once per call with the shared rules
  (`likeness.user_tokens`), refuses what the table refuses, checks the `tenant` and `subject_id` fields of
  a unary request against the token, and runs the method with the verified `Principal` in
  `likeness.method_access.current_principal()`. A method missing from the table is refused, so a new
  method cannot be called before someone decides what it needs.

So a compromised gateway, or any pod holding a gateway certificate, gets nothing of a person without a
valid token of that person's tenant (and, for an end user's token, of that person).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NoReturn

import grpc

from likeness.config import CommonSettings
from likeness.grpc_telemetry import split_method
from likeness.method_access import MethodRule, ServiceRules, acting_as, declared, refusal
from likeness.rpc_errors import abort
from likeness.user_tokens import Principal, TokenKeysUnavailable, TokenRefused, TokenVerifier

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

log = logging.getLogger(__name__)

#: Told of a token refused on a subject it may not touch (`wrong_subject`): (principal, tenant, subject id).
WrongSubjectSink = Callable[[Principal, str, str], Awaitable[None]]
_wrong_subject_sinks: list[WrongSubjectSink] = []


def on_wrong_subject(sink: WrongSubjectSink) -> None:
    """Has this process's interceptor tell `sink` of every `wrong_subject` refusal, before it answers:
    retention, which owns subjects, records `access.denied` on the person's log (issue 16). The sink is
    best effort: whatever it raises, the call is refused the same way."""
    _wrong_subject_sinks.append(sink)


#: The metadata key the token travels in (gRPC's own convention for credentials).
TOKEN_METADATA_KEY = "authorization"  # noqa: S105 - a header name, not a secret
#: Infrastructure services on every server, outside the user-token rules (they carry no one's data).
INFRASTRUCTURE_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
ServicerContext = grpc.aio.ServicerContext[Any, Any]

# ---------------------------------------------------------------------------------------------- client

_forwarded: ContextVar[str | None] = ContextVar("likeness_forwarded_user_token", default=None)


def forward_user_token(token: str) -> None:
    """Sends `token` with every backend call made from now on in this request (its task and the tasks it
    starts: they copy the context)."""
    _forwarded.set(token)


def forwarded_user_token() -> str | None:
    return _forwarded.get()


def token_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries `token` (for a caller that sets metadata itself)."""
    return ((TOKEN_METADATA_KEY, f"Bearer {token}"),)


TokenSource = Callable[[], str | None]


def _with_token(details: grpc.aio.ClientCallDetails, token: str | None) -> grpc.aio.ClientCallDetails:
    method = details.method.decode() if isinstance(details.method, bytes) else str(details.method)
    if token is None or split_method(method)[0] in INFRASTRUCTURE_SERVICES:
        return details  # health checks and reflection are no one's call: they never carry a user's token
    metadata = grpc.aio.Metadata(*(tuple(details.metadata) if details.metadata else ()))
    metadata[TOKEN_METADATA_KEY] = f"Bearer {token}"
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout,
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _Carry:
    def __init__(self, source: TokenSource) -> None:
        self.source = source


class _CarryUnaryUnary(_Carry, _UnaryUnaryInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self.source()), request)


class _CarryUnaryStream(_Carry, _UnaryStreamInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self.source()), request)


class _CarryStreamUnary(_Carry, _StreamUnaryInterceptor):
    async def intercept_stream_unary(
        self,
        continuation: Callable[..., Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(_with_token(client_call_details, self.source()), request_iterator)


class _CarryStreamStream(_Carry, _StreamStreamInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: Callable[..., Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(_with_token(client_call_details, self.source()), request_iterator)


def token_interceptors(source: TokenSource) -> list[Any]:
    """The token `source` gives at each call (none when it gives None), one interceptor per call shape
    (grpc.aio picks by type); typed loosely, as grpc-stubs declares `ClientInterceptor` as a partial stub
    that nothing satisfies."""
    return [
        _CarryUnaryUnary(source),
        _CarryUnaryStream(source),
        _CarryStreamUnary(source),
        _CarryStreamStream(source),
    ]


def user_token_interceptors() -> list[Any]:
    """The forwarded token (`forward_user_token`) on every call made while handling a request."""
    return token_interceptors(_forwarded.get)


def fixed_token_interceptors(token: str) -> list[Any]:
    """`token` on every call of the channel (a caller that acts for one user throughout, and tests)."""
    return token_interceptors(lambda: token)


# ---------------------------------------------------------------------------------------------- server


def bearer_token(metadata: Any) -> str | None:
    """The bearer token among a call's metadata (pairs of key and str or bytes value), if any."""
    for key, value in metadata or ():
        if key == TOKEN_METADATA_KEY:
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


class UserTokenInterceptor(_ServerInterceptor):
    """Enforces each service's method table with the caller's verified token (see the module's doc)."""

    def __init__(self, verifier: TokenVerifier, rules: Mapping[str, ServiceRules] | None = None) -> None:
        self._verifier = verifier
        self._rules = rules

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        service, method = split_method(handler_call_details.method)
        if handler is None or service in INFRASTRUCTURE_SERVICES:
            return handler
        rules = (self._rules if self._rules is not None else declared()).get(service)
        rule = rules.get(method) if rules is not None else None
        return _wrap_handler(handler, _Gate(self._verifier, rule, f"{service}/{method}"))


class _Gate:
    """One method's admission: the rule, and the token verified against it (once per call)."""

    def __init__(self, verifier: TokenVerifier, rule: MethodRule | None, method: str) -> None:
        self.verifier = verifier
        self.rule = rule
        self.method = method

    async def admit(self, context: ServicerContext) -> Principal | None:
        """The call's principal (None for a method that needs no token), or an abort."""
        if self.rule is None:
            log.warning("call to a method without a token rule refused", extra={"method": self.method})
            await abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "method_not_classified",
                "This method declares no token rule.",
            )
        if not self.rule.needs_token:
            return None
        token = bearer_token(context.invocation_metadata())
        if token is None:
            await self._refuse(
                context, grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", "A user token is required."
            )
        try:
            principal = await self.verifier.verify(token)
        except TokenRefused as refused:
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", str(refused))
        except TokenKeysUnavailable as away:
            await abort(context, grpc.StatusCode.UNAVAILABLE, "token_keys_unavailable", str(away))
        reason = refusal(self.rule, principal)
        if reason is not None:
            await self._refuse(context, grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope", reason)
        return principal

    async def check_request(
        self, request: Any, principal: Principal | None, context: ServicerContext
    ) -> None:
        """A unary request's own `tenant` and `subject_id` must be the token's (methods check again)."""
        if principal is None:
            return
        fields = request.DESCRIPTOR.fields_by_name
        if "tenant" in fields and request.tenant != principal.tenant:
            await self._refuse(
                context, grpc.StatusCode.PERMISSION_DENIED, "wrong_tenant", "The token is not of this tenant."
            )
        bound = principal.subject
        if "subject_id" in fields and bound is not None and request.subject_id != bound:
            for sink in _wrong_subject_sinks:
                try:
                    await sink(principal, request.tenant, request.subject_id)
                except Exception:  # the refusal stands whatever the sink does
                    log.warning("a wrong_subject sink failed", extra={"method": self.method})
            await self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "wrong_subject",
                "The token may not touch this subject.",
            )

    async def _refuse(
        self, context: ServicerContext, status: grpc.StatusCode, code: str, message: str
    ) -> NoReturn:
        # The method and the reason only: never the token, the tenant or an id.
        log.info("user token refused", extra={"method": self.method, "reason": code})
        await abort(context, status, code, message)


Behavior = Callable[..., Any]


def _unary_request(behavior: Behavior, gate: _Gate) -> Behavior:
    async def wrapped(request: Any, context: ServicerContext) -> Any:
        principal = await gate.admit(context)
        await gate.check_request(request, principal, context)
        with acting_as(principal):
            return await behavior(request, context)

    return wrapped


def _unary_request_stream_response(behavior: Behavior, gate: _Gate) -> Behavior:
    if not inspect.isasyncgenfunction(behavior):
        return _unary_request(behavior, gate)  # writes with context.write, returns None

    async def wrapped(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
        principal = await gate.admit(context)
        await gate.check_request(request, principal, context)
        with acting_as(principal):
            async for item in behavior(request, context):
                yield item

    return wrapped


def _stream_request(behavior: Behavior, gate: _Gate) -> Behavior:
    """Client-streaming: the fields come in the messages, so the method checks them itself."""

    async def wrapped(requests: Any, context: ServicerContext) -> Any:
        principal = await gate.admit(context)
        with acting_as(principal):
            return await behavior(requests, context)

    return wrapped


def _stream_request_stream_response(behavior: Behavior, gate: _Gate) -> Behavior:
    if not inspect.isasyncgenfunction(behavior):
        return _stream_request(behavior, gate)

    async def wrapped(requests: Any, context: ServicerContext) -> AsyncIterator[Any]:
        principal = await gate.admit(context)
        with acting_as(principal):
            async for item in behavior(requests, context):
                yield item

    return wrapped


def _wrap_handler(handler: Handler, gate: _Gate) -> Handler:
    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_unary_request(handler.unary_unary, gate), **serializers)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _unary_request_stream_response(handler.unary_stream, gate), **serializers
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _stream_request(handler.stream_unary, gate), **serializers
        )
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _stream_request_stream_response(handler.stream_stream, gate), **serializers
        )
    return handler


def user_token_interceptor(settings: CommonSettings) -> UserTokenInterceptor:
    """The interceptor a service's gRPC server installs, verifying with its settings' token rules."""
    return UserTokenInterceptor(TokenVerifier(settings))
