"""A write refused because its stream or bucket is at its byte bound, turned into an answer that says so.

Jobs, audit records and KV records are kept with `DiscardNew` (`likeness.provisioning`): when one is full,
nats-server refuses the write ("maximum bytes exceeded") rather than drop old work or evidence. Whatever
method met it fails closed with gRPC UNAVAILABLE and the machine code `storage_full`, which the gateway
answers as 503 `storage_full` with `Retry-After`, and the LikenessStreamFull alert has already told an
operator (issue 18). Without this interceptor it would be an opaque INTERNAL error.

The same interceptor answers a JetStream request that got no answer in time (`nats.errors.TimeoutError`,
`NoRespondersError`), or that JetStream answered 503 (`ServiceUnavailableError`: "JetStream system
temporarily unavailable", what every server answers while the cluster's meta leader is being elected), with
UNAVAILABLE `unavailable`: on a JetStream cluster that is a stream, bucket or the cluster itself electing a
new leader after a server died, for a few seconds; the gateway answers 503 with `Retry-After`, and the retry
succeeds, where an INTERNAL would have been a 500 (`tests/chaos/test_chaos_cluster.py`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import nats.errors
import nats.js.errors

from likeness.rpc_errors import abort

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
    _ServerInterceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    _ServerInterceptor = grpc.aio.ServerInterceptor

log = logging.getLogger(__name__)

STORAGE_FULL = "storage_full"
STORAGE_FULL_MESSAGE = "Storage for this kind of record is full; the operator has been alerted. Retry later."
#: nats-server's JSStreamStoreFailedF, the code of "maximum bytes/messages exceeded" under DiscardNew.
_STORE_FAILED = 10077


#: The code of a call the bus did not answer in time (the gateway's 503 `unavailable`).
BUS_UNAVAILABLE = "unavailable"
BUS_UNAVAILABLE_MESSAGE = (
    "The message bus did not answer in time (a server may be failing over). Retry shortly."
)
#: What nats-py raises when a JetStream request gets no answer: no leader yet, or none in time.
_NO_ANSWER = (nats.errors.TimeoutError, nats.errors.NoRespondersError)


def is_temporarily_unavailable(error: BaseException) -> bool:
    """A JetStream API answer of 503: the cluster or the stream has no leader yet."""
    return isinstance(error, nats.js.errors.APIError) and (
        isinstance(error, nats.js.errors.ServiceUnavailableError) or error.code == 503
    )


def is_storage_full(error: BaseException) -> bool:
    description = str(getattr(error, "description", "") or "")
    return (
        isinstance(error, nats.js.errors.APIError)
        and error.err_code == _STORE_FAILED
        and "exceeded" in description
        # "maximum messages per subject exceeded" is a quota (one active training per subject,
        # `likeness.quotas`), not a full stream: the submit answers it itself.
        and "per subject" not in description
    )


Behavior = Callable[..., Any]


def _unary(behavior: Behavior) -> Behavior:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(request, context)
        except nats.js.errors.APIError as error:
            await _api_error(context, error)
        except _NO_ANSWER as error:
            await _bus_unavailable(context, error)

    return wrapped


async def _api_error(context: grpc.aio.ServicerContext[Any, Any], error: nats.js.errors.APIError) -> None:
    """A full stream or a JetStream without a leader answers UNAVAILABLE; any other API error goes on."""
    if is_storage_full(error):
        log.error("a write was refused: its stream is full")
        await abort(context, grpc.StatusCode.UNAVAILABLE, STORAGE_FULL, STORAGE_FULL_MESSAGE)
    if is_temporarily_unavailable(error):
        await _bus_unavailable(context, error)
    raise error


async def _bus_unavailable(context: grpc.aio.ServicerContext[Any, Any], error: BaseException) -> None:
    log.warning("the message bus did not answer in time", extra={"error": type(error).__name__})
    await abort(context, grpc.StatusCode.UNAVAILABLE, BUS_UNAVAILABLE, BUS_UNAVAILABLE_MESSAGE)


def _streaming(behavior: Behavior) -> Behavior:
    if not inspect.isasyncgenfunction(behavior):
        return _unary(behavior)

    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            async for item in behavior(request, context):
                yield item
        except nats.js.errors.APIError as error:
            await _api_error(context, error)
        except _NO_ANSWER as error:
            await _bus_unavailable(context, error)

    return wrapped


def _wrap(handler: Handler) -> Handler:
    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(_unary(handler.unary_unary), **serializers)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(_streaming(handler.unary_stream), **serializers)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(_unary(handler.stream_unary), **serializers)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(_streaming(handler.stream_stream), **serializers)
    return handler


class StorageFullInterceptor(_ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        return handler if handler is None else _wrap(handler)
