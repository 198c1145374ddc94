"""Around every request: a request id, `Cache-Control: no-store`, a deadline, metrics, one access log line
(DEBUG for a quick successful read unless `LIKENESS_ACCESS_LOG_READS`), the envelope for anything
unexpected, and the idempotency record of the response.

A plain ASGI middleware (not `BaseHTTPMiddleware`) so streamed bodies pass through untouched. Log lines
and metrics carry the route template (`/v1/subjects/{subject_id}`), never the path with its ids.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import DO_NOT_STORE_KEY, envelope
from gateway.idempotency import CLAIM_STATE_KEY, Claim
from gateway.metrics import Metrics
from gateway.request_context import REQUEST_ID_HEADER, request_id_var

log = logging.getLogger("gateway.access")

__all__ = ["REQUEST_ID_HEADER", "RequestIdLogFilter", "RequestMiddleware", "install_request_id_logging"]

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
#: Requests that stream at the client's pace have their own deadlines (gRPC stream timeout, SSE maximum):
#: photo uploads, image downloads, event streams and exports.
_STREAMING = re.compile(
    r"^/v1/(subjects/[^/]+/(photos|export)|renders/[^/]+/images/[^/]+|[a-z]+/[^/]+/events)$"
)


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


#: Reads this slow are logged at INFO even when quick successful reads are not.
SLOW_READ_SECONDS = 1.0
_READS = frozenset({"GET", "HEAD"})
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode()
#: Headers every response gets (set, replacing any the route gave), as raw ASGI pairs.
_ALWAYS = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))
_OWN_HEADERS = frozenset({_REQUEST_ID_KEY, *(name for name, _ in _ALWAYS)})


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:  # ASGI header names are lower-case
        if name == _REQUEST_ID_KEY:
            given: str = value.decode("latin-1")
            # A caller's id is kept only if it is harmless in a log line and a header.
            if _VALID_REQUEST_ID.match(given):
                return given
            break
    return os.urandom(16).hex()


def _with_own_headers(headers: Iterable[tuple[bytes, bytes]], request_id: bytes) -> list[tuple[bytes, bytes]]:
    raw = [(name, value) for name, value in headers if name.lower() not in _OWN_HEADERS]
    raw.append((_REQUEST_ID_KEY, request_id))
    raw.extend(_ALWAYS)
    return raw


def is_streaming(method: str, path: str) -> bool:
    if not _STREAMING.match(path):
        return False
    # Listing photos is an ordinary request; uploading them streams.
    return not (method != "POST" and path.endswith("/photos"))


class RequestMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, timeout: float, log_reads: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.timeout = timeout
        self.log_reads = log_reads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        # Where the route's idempotency claim (if any) is left for us (Request.state is this dict).
        state = scope.setdefault("state", {})
        recording: Claim | None = None
        body = bytearray()

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started, recording
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = _with_own_headers(message.get("headers", ()), request_id.encode())
                claim = state.get(CLAIM_STATE_KEY)
                if isinstance(claim, Claim) and claim.pending:
                    recording = claim
                    recording.begin_response(status, MutableHeaders(scope=message))
            elif message["type"] == "http.response.body" and recording is not None:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    # Stored before the client sees the answer: a retry after it always finds it.
                    claim, recording = recording, None
                    if state.get(DO_NOT_STORE_KEY):
                        await claim.release()
                    else:
                        await claim.finish(bytes(body))
            await send(message)

        streaming = is_streaming(scope["method"], scope["path"])
        try:
            if streaming:
                await self.app(scope, receive, send_with_headers)
            else:
                try:
                    async with asyncio.timeout(self.timeout):
                        await self.app(scope, receive, send_with_headers)
                except TimeoutError:
                    if response_started:
                        raise
                    log.warning("request timed out")
                    await envelope(504, "timeout", "The request took too long; try again.")(
                        scope, receive, send_with_headers
                    )
        except Exception:
            log.exception("unhandled error")
            if response_started:
                raise  # mid-stream: the connection is cut, which the client sees as an incomplete body
            await envelope(500, "internal", "Something went wrong on our side.")(
                scope, receive, send_with_headers
            )
        finally:
            claim = state.get(CLAIM_STATE_KEY)
            if isinstance(claim, Claim) and claim.pending:
                # No stored answer (the client went away, or the response failed): a retry runs again.
                await asyncio.shield(claim.release())
            route = getattr(scope.get("route"), "path", "unmatched")
            seconds = time.perf_counter() - started
            self.metrics.observe(scope["method"], route, status, seconds)
            level = self._access_level(scope["method"], status, seconds, streaming)
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 1),
                    },
                )
            request_id_var.reset(token)

    def _access_level(self, method: str, status: int, seconds: float, streaming: bool) -> int:
        """INFO for what an operator follows up: writes, refusals and failures, slow answers, and streams
        (uploads, downloads, exports, event streams); a plain read that succeeded quickly (the polling that
        makes most of the traffic, counted in the metrics anyway) is DEBUG unless `log_reads` is set."""
        if (
            not self.log_reads
            and method in _READS
            and status < 400
            and seconds < SLOW_READ_SECONDS
            and not streaming
        ):
            return logging.DEBUG
        return logging.INFO
