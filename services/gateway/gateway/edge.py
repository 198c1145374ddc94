"""Limits before work: every request is weighed here, from its headers alone, before FastAPI reads a byte of
its body or resolves a dependency.

In order, for every route but the probes (`/healthz`, `/readyz`):

1. **Concurrency**: at most `max_concurrent_requests` in flight per replica; past it 503 `overloaded`
   with `Retry-After` (streams count while they are open).
2. **Body size**: a declared `Content-Length` over the route's limit (`max_json_body_bytes` for every route
   but the upload, the upload's files and form overhead for it) is 413 `payload_too_large`, unread. A body
   without a length (chunked) is counted as it is read and cut at the limit with the same 413.
3. **Authentication**, for a route that takes a bearer token: no valid token is 401, and the body is never
   read. The verified principal is handed to the route's dependency (`gateway.auth.EDGE_PRINCIPAL_KEY`),
   which checks the route's scopes: the token is verified once.
4. **Rate**: one token of the caller's bucket and of its tenant's (`gateway.ratelimit`); 429 past either.
5. **Long requests per caller**: event streams and exports hold a slot of the caller's for their whole
   life (`gateway.caller_slots`); 429 `too_many_streams` / `too_many_exports` past the cap.

An upload also gets its deadline here, counted from its arrival (`gateway.uploads.deadline_of`).

Any answer given before the request's body was read to its end carries `Connection: close`: uvicorn then
closes the connection after the response instead of reading (and throwing away) the rest of the body to
keep the connection alive, so an unread body costs neither memory nor time. Until the route reads it,
uvicorn holds at most its read buffer (it stops reading from the socket past 64 KiB).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import NamedTuple

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import EDGE_PRINCIPAL_KEY, Principal, TokenVerifier, bearer_credentials
from gateway.caller import Caller, caller_of
from gateway.caller_slots import CallerSlots
from gateway.config import GatewaySettings
from gateway.edge_routes import RouteKind, RoutePolicy, RouteTable
from gateway.errors import ApiError, envelope
from gateway.metrics import Metrics
from gateway.ratelimit import RateLimiter
from gateway.uploads import UPLOAD_DEADLINE_KEY

log = logging.getLogger(__name__)

#: Seconds a client refused for load, or for a full stream or export slot, is told to wait.
RETRY_AFTER_OVERLOADED = 1
RETRY_AFTER_SLOTS = 5
_CLOSE = (b"connection", b"close")


def overloaded() -> ApiError:
    return ApiError(
        503,
        "overloaded",
        "The gateway is answering as many requests as it can; retry shortly.",
        headers={"Retry-After": str(RETRY_AFTER_OVERLOADED)},
    )


def payload_too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", _too_large_message(limit))


#: Per kind of long request: its machine code past the cap, and what it is called in the message.
_SLOT_REFUSALS = {
    RouteKind.EVENTS: ("too_many_streams", "event streams"),
    RouteKind.EXPORT: ("too_many_exports", "exports"),
}


def too_many(kind: RouteKind, limit: int) -> ApiError:
    code, what = _SLOT_REFUSALS[kind]
    return ApiError(
        429,
        code,
        f"This caller already has {limit} {what} open; finish one, or retry later.",
        headers={"Retry-After": str(RETRY_AFTER_SLOTS)},
    )


class RefusedRoute(NamedTuple):
    """Stands for the route in the scope of a request refused before routing (its template only)."""

    path: str


class BodyTooLarge(HTTPException):
    """Raised by the counting `receive` when a body without a declared length passes its limit. An
    `HTTPException`, which FastAPI passes on from its body reading, so it is answered as a 413 envelope."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=_too_large_message(limit))


def _too_large_message(limit: int) -> str:
    return f"The request body is larger than this route accepts ({limit} bytes)."


class RequestBody:
    """The request's `receive`, counting the body against its limit; knows whether it was read to its end."""

    def __init__(self, scope: Scope, receive: Receive, limit: int, on_too_large: Callable[[], None]) -> None:
        self._receive = receive
        self.limit = limit
        self._on_too_large = on_too_large
        self.received = 0
        self.declared: int | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                self.declared = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                chunked = True
        #: No body at all is a body read to its end.
        self.ended = not chunked and not self.declared

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.ended = True
            if self.received > self.limit:
                self._on_too_large()
                raise BodyTooLarge(self.limit)
        return message

    def closing(self, send: Send) -> Send:
        """`send`, with `Connection: close` on a response that starts before the body was read to its end."""

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and not self.ended:
                message["headers"] = [*message.get("headers", ()), _CLOSE]
            await send(message)

        return send_closing


class EdgeGuard:
    """The ASGI middleware of the module docstring (inside the request middleware, so refusals carry the
    request id and are counted and logged like every answer)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: RouteTable,
        settings: GatewaySettings,
        verifier: TokenVerifier,
        rate_limiter: RateLimiter,
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.routes = routes
        self.verifier = verifier
        self.rate_limiter = rate_limiter
        self.metrics = metrics
        self.max_in_flight = settings.max_concurrent_requests
        self.upload_seconds = settings.stream_timeout_seconds
        self.slots = {
            RouteKind.EVENTS: CallerSlots(settings.max_event_streams_per_caller),
            RouteKind.EXPORT: CallerSlots(settings.max_exports_per_caller),
        }
        self.in_flight = 0
        # Read when scraped: counting in the gauge itself would take its lock twice per request.
        metrics.in_flight.set_function(lambda: self.in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.routes.match(scope["method"], scope["path"])
        if policy.kind is RouteKind.PROBE:
            await self.app(scope, receive, send)
            return
        body = RequestBody(scope, receive, policy.body_limit, self._count_cut_body)
        if not body.ended:  # a request without a body needs neither the counting nor the closing
            receive, send = body.receive, body.closing(send)
        if self.in_flight >= self.max_in_flight:
            await self._refuse("overloaded", overloaded(), policy, scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self._admit(policy, scope, body, receive, send)
        finally:
            self.in_flight -= 1

    async def _admit(
        self, policy: RoutePolicy, scope: Scope, body: RequestBody, receive: Receive, send: Send
    ) -> None:
        if body.declared is not None and body.declared > body.limit:
            await self._refuse("body_too_large", payload_too_large(body.limit), policy, scope, receive, send)
            return
        held: tuple[CallerSlots, Caller] | None = None  # the slot of a long request, given back at its end
        if policy.needs_token:
            try:
                principal = await self._authenticate(scope)
            except ApiError as refused:
                reason = "unauthenticated" if refused.status == 401 else None
                await self._refuse(reason, refused, policy, scope, receive, send)
                return
            caller = caller_of(principal)
            kind = "upload" if policy.kind is RouteKind.UPLOAD else "api"
            try:
                self.rate_limiter.check(caller, kind)
            except ApiError as limited:
                self.metrics.rate_limited.labels(kind=kind).inc()
                await self._refuse("rate_limited", limited, policy, scope, receive, send)
                return
            slots = self.slots.get(policy.kind)
            if slots is not None:
                if not slots.try_take(caller):
                    refusal = too_many(policy.kind, slots.per_caller)
                    await self._refuse(refusal.code, refusal, policy, scope, receive, send)
                    return
                held = (slots, caller)
        if policy.kind is RouteKind.UPLOAD:
            state = scope.setdefault("state", {})
            state[UPLOAD_DEADLINE_KEY] = asyncio.get_running_loop().time() + self.upload_seconds
        try:
            await self.app(scope, receive, send)
        finally:
            if held is not None:
                held[0].give_back(held[1])

    def _count_cut_body(self) -> None:
        self.metrics.refused.labels(reason="body_too_large").inc()

    async def _authenticate(self, scope: Scope) -> Principal:
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        credentials = bearer_credentials(authorization)
        principal = await self.verifier.verify(credentials)
        scope.setdefault("state", {})[EDGE_PRINCIPAL_KEY] = (credentials, principal)
        return principal

    async def _refuse(
        self,
        reason: str | None,
        error: ApiError,
        policy: RoutePolicy,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        if reason is not None:
            self.metrics.refused.labels(reason=reason).inc()
        if policy.path:
            # Refused before routing: the access log and the metrics still name the route's template.
            scope["route"] = RefusedRoute(policy.path)
        response = envelope(error.status, error.code, error.message, error.headers)
        await response(scope, receive, send)
