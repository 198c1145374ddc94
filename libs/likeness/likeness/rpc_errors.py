"""One convention for errors across gRPC: a status plus a stable machine code in trailing metadata.

Services abort with `await abort(context, grpc.StatusCode.NOT_FOUND, "subject_not_found", "...")`; the
gateway reads `error_code(exc)` and turns it into `{"error": {"code", "message"}}` with the right HTTP status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import grpc

CODE_METADATA_KEY = "likeness-error-code"


async def abort(
    context: grpc.aio.ServicerContext[object, object],
    status: grpc.StatusCode,
    code: str,
    message: str,
    extra: Mapping[str, str] | None = None,
) -> NoReturn:
    """Ends the call with `status` and the machine `code`; `extra` adds details a client acts on (a quota's
    name, a retry hint), read back with `error_detail`."""
    context.set_trailing_metadata(((CODE_METADATA_KEY, code), *(extra or {}).items()))
    await context.abort(status, message)
    raise AssertionError("unreachable: context.abort raises")


def error_code(exc: grpc.aio.AioRpcError) -> str | None:
    return error_detail(exc, CODE_METADATA_KEY)


def error_detail(exc: grpc.aio.AioRpcError, key: str) -> str | None:
    """One trailing metadata value of a failed call (`abort`'s code or one of its `extra`)."""
    metadata: Any = exc.trailing_metadata() or ()  # grpc's stubs type the pairs loosely
    for found, value in metadata:
        if found == key:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def status_lost_to_a_late_write(exc: grpc.aio.AioRpcError) -> bool:
    """Whether grpc.aio replaced the server's status with its own INTERNAL error.

    When a server ends a client-streaming call (a refusal, a deadline) while the client still has a write in
    flight, grpc.aio's `_write` turns the failed write into `INTERNAL: Internal error from Core`, overwriting
    the status and trailers the server had sent (grpc/grpc#36066; fix proposed in grpc/grpc#43486). The
    server's answer is then unknowable to the client: callers treat the call as ended by the server, and
    retryable, rather than as a server fault.
    """
    return exc.code() == grpc.StatusCode.INTERNAL and "execute_batch" in (exc.debug_error_string() or "")
