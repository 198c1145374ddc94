"""The gateway's HTTP/1.1 protocol for uvicorn: uvicorn's own h11 protocol plus a header-read timeout.

uvicorn has no timeout on reading a request's headers: its keep-alive timer is armed only after a
response and disarmed by the first byte that arrives, so a client sending one byte every few seconds
(slowloris) holds its connection, and a connection that sends nothing at all is never timed out. Here a
timer starts when a connection opens and again when each response ends; if the next request's headers are
not complete when it fires (h11 is still waiting for them), the client gets `408 Request Timeout` and the
connection is closed. A request whose headers arrived in time is never touched by it: its body and its
response have their own deadlines (the request deadline, the upload deadline, the stream maximum).

Why this and not another server (issue 15 asked to decide): hypercorn's `read_timeout` bounds each read,
so one byte every few seconds resets it, the same gap as uvicorn's; granian has a real header timeout
(hyper's `header_read_timeout`) but would replace the whole HTTP stack and process model (its own
workers, signals and logging) under the gateway. Subclassing uvicorn's `H11Protocol` (the protocol the
gateway already ran on: httptools is not installed) keeps everything else as it was: SIGTERM draining
(`timeout_graceful_shutdown`), our JSON logs with no access log of uvicorn's (paths hold ids), and the
same parser. The override is small and leans only on uvicorn's protocol interface (`connection_made`,
`connection_lost`, `on_response_complete`) and on h11's connection state, which this module's tests pin
down (`services/gateway/tests/test_gateway_http_protocol.py`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_TIMEOUT_BODY = json.dumps(
    {"error": {"code": "header_timeout", "message": "The request headers did not arrive in time."}}
).encode()
#: The answer to headers that did not arrive in time (written raw: h11 sends no response before a request).
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/json\r\n"
    b"cache-control: no-store\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


class HeaderTimeoutProtocol(H11Protocol):
    """`H11Protocol` closing connections whose request headers are not complete `header_timeout` seconds
    after the connection opened or its previous response ended. Configure with `with_header_timeout`."""

    header_timeout: ClassVar[float] = 10.0

    @staticmethod
    def on_header_timeout() -> None:
        """Called once per connection closed by the timer (counts it; must not raise)."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request's headers have the same time

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_time_is_up)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_time_is_up(self) -> None:
        self._header_timer = None
        # IDLE: h11 has not seen a complete request head since the timer started (a request being
        # answered, or whose body is being read, is SEND_BODY, DONE or MUST_CLOSE).
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        self.on_header_timeout()
        self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def with_header_timeout(seconds: float, on_timeout: Callable[[], None]) -> type[HeaderTimeoutProtocol]:
    """The protocol class to hand to uvicorn (`http=`), with this timeout and this counter of closings."""
    return type(
        "GatewayHttpProtocol",
        (HeaderTimeoutProtocol,),
        {"header_timeout": seconds, "on_header_timeout": staticmethod(on_timeout)},
    )
