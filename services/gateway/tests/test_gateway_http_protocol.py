"""The gateway's HTTP protocol (`gateway.http_protocol`) under a real uvicorn server on a loopback port: a
request's headers must arrive within the header timeout, counted from the connection's start or from the
previous response; bodies and long responses are not cut by it; SIGTERM still drains what is in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from gateway.http_protocol import with_header_timeout
from likeness_dev.ports import free_port

HEADER_TIMEOUT = 1.0
#: Generous: the machine is shared and slow; the bound itself is what the tests check.
MARGIN = 2.0
REQUEST = b"GET /fast HTTP/1.1\r\nHost: gateway\r\n\r\n"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """`/fast` answers at once; `/slow-body` reads its whole body first; `/long` streams for 2.5 s."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow-body":
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await _answer(send, str(size).encode())
    elif scope["path"] == "/long":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for _ in range(5):
            await asyncio.sleep(0.5)
            await send({"type": "http.response.body", "body": b"tick\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await _answer(send, b"ok")


async def _answer(send: Send, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Served:
    port: int
    server: uvicorn.Server
    timeouts: list[float] = field(default_factory=list)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@pytest.fixture
async def served(server_process: None) -> AsyncIterator[Served]:
    port = free_port()
    timeouts: list[float] = []
    protocol = with_header_timeout(HEADER_TIMEOUT, lambda: timeouts.append(time.monotonic()))
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=protocol,
        ws="none",
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.05)
    try:
        yield Served(port, server, timeouts)
    finally:
        server.should_exit = True
        await serving


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sends until it closes the connection, which must happen within `seconds`."""
    received = b""
    async with asyncio.timeout(seconds):
        while chunk := await reader.read(4096):
            received += chunk
    return received


async def _response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head + await asyncio.wait_for(reader.readexactly(length), 10)


async def _trickle(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    for byte in data:
        if writer.is_closing():
            return
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every)


async def test_headers_trickled_a_byte_at_a_time_are_answered_408_and_closed(served: Served) -> None:
    reader, writer = await served.connect()
    started = time.monotonic()
    trickling = asyncio.create_task(_trickle(writer, REQUEST, every=0.2))
    received = await _closed_within(reader, HEADER_TIMEOUT + MARGIN)
    closed_after = time.monotonic() - started
    trickling.cancel()
    writer.close()
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"header_timeout" in received
    assert closed_after >= HEADER_TIMEOUT * 0.9, "not before its time"
    assert len(served.timeouts) == 1, "counted once"


async def test_a_connection_that_sends_nothing_is_closed(served: Served) -> None:
    reader, writer = await served.connect()
    received = await _closed_within(reader, HEADER_TIMEOUT + MARGIN)
    writer.close()
    assert received.startswith(b"HTTP/1.1 408 ")


async def test_the_next_requests_headers_get_the_same_time_after_a_response(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(REQUEST)
    assert (await _response(reader)).endswith(b"ok")
    trickling = asyncio.create_task(_trickle(writer, REQUEST, every=0.2))
    received = await _closed_within(reader, HEADER_TIMEOUT + MARGIN)
    trickling.cancel()
    writer.close()
    assert received.startswith(b"HTTP/1.1 408 ")


async def test_a_slow_body_and_a_long_response_are_not_cut(served: Served) -> None:
    reader, writer = await served.connect()
    body = b"x" * 12
    writer.write(b"POST /slow-body HTTP/1.1\r\nHost: gateway\r\nContent-Length: 12\r\n\r\n")
    await _trickle(writer, body, every=0.25)  # 3 s: past the header timeout, headers were complete
    assert (await _response(reader)).endswith(b"12")
    writer.write(b"GET /long HTTP/1.1\r\nHost: gateway\r\n\r\n")
    streamed = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10)  # the chunked body's end
    assert streamed.count(b"tick") == 5
    # And the connection still serves a request sent in time.
    writer.write(REQUEST)
    assert (await _response(reader)).endswith(b"ok")
    writer.close()
    assert served.timeouts == []


async def test_a_shutdown_still_lets_the_request_in_flight_finish(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(b"GET /long HTTP/1.1\r\nHost: gateway\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"tick\n"), 10)
    served.server.should_exit = True  # what uvicorn's SIGTERM handler does
    rest = await _closed_within(reader, 10)
    writer.close()
    assert rest.count(b"tick") == 4, "the response ran to its end"
    assert rest.endswith(b"0\r\n\r\n")
