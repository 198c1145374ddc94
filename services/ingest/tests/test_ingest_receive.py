"""Receiving an upload (`IngestServicer._receive`) ends at a deadline whatever the caller sends, so no caller
holds an upload slot longer: its own `upload_receive_seconds`, or the caller's gRPC deadline if sooner. A
stream that gRPC ends at the caller's deadline (it ends it as if the caller had closed it, before it
cancels the handler) is not taken for a whole photo. Pure logic: the servicer's receive path with a
stand-in call context, no server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from ingest.service import IngestServicer
from likeness.rpc_errors import CODE_METADATA_KEY
from likeness.v1 import ingest_pb2


class Aborted(Exception):
    def __init__(self, status: grpc.StatusCode, code: str) -> None:
        super().__init__(status, code)
        self.status = status
        self.code = code


class Context:
    """What `_receive` asks of a call: the time left before the caller's deadline, and how to abort."""

    def __init__(self, deadline_in: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = None if deadline_in is None else loop.time() + deadline_in
        self._code = ""

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    def set_trailing_metadata(self, metadata: Any) -> None:
        self._code = dict(metadata)[CODE_METADATA_KEY]

    async def abort(self, status: grpc.StatusCode, message: str) -> None:
        raise Aborted(status, self._code)


def servicer(receive_seconds: float = 60.0, max_bytes: int = 1000) -> Any:
    """The part of the servicer `_receive` uses."""
    return SimpleNamespace(_receive_seconds=receive_seconds, limits=SimpleNamespace(max_bytes=max_bytes))


async def chunks(*parts: bytes, every: float = 0.0, then_wait: float = 0.0) -> AsyncIterator[Any]:
    for part in parts:
        await asyncio.sleep(every)
        yield ingest_pb2.SanitizePhotoRequest(chunk=part)
    await asyncio.sleep(then_wait)


async def receive(own: Any, requests: AsyncIterator[Any], context: Context) -> tuple[bytes, bool]:
    result: tuple[bytes, bool] = await IngestServicer._receive(own, requests, context)  # type: ignore[arg-type]
    return result


async def test_a_photo_that_arrives_in_time_is_received_whole() -> None:
    data, too_large = await receive(servicer(), chunks(b"ab", b"cd", every=0.01), Context(deadline_in=30))
    assert (data, too_large) == (b"abcd", False)


async def test_a_photo_over_the_limit_stops_the_receive() -> None:
    data, too_large = await receive(servicer(max_bytes=3), chunks(b"ab", b"cd"), Context(deadline_in=None))
    assert (data, too_large) == (b"", True)


@pytest.mark.parametrize(
    ("own_seconds", "deadline_in"),
    [(0.3, None), (0.3, 30.0), (30.0, 0.3)],
    ids=["own-deadline-no-caller-deadline", "own-deadline-sooner", "caller-deadline-sooner"],
)
async def test_a_trickle_ends_at_the_sooner_deadline(own_seconds: float, deadline_in: float | None) -> None:
    started = asyncio.get_running_loop().time()
    trickle = chunks(*[b"x"] * 100, every=0.1)  # 10 s
    with pytest.raises(Aborted) as ended:
        await receive(servicer(receive_seconds=own_seconds), trickle, Context(deadline_in))
    assert (ended.value.status, ended.value.code) == (grpc.StatusCode.DEADLINE_EXCEEDED, "upload_timeout")
    assert asyncio.get_running_loop().time() - started < 5


async def test_a_stream_ended_by_the_callers_deadline_is_not_a_whole_photo() -> None:
    # As gRPC does at a deadline: the stream ends (no more messages) just before the handler is cancelled.
    context = Context(deadline_in=1.0)
    with pytest.raises(Aborted) as ended:
        await receive(servicer(), chunks(b"half a photo", then_wait=0.85), context)
    assert ended.value.status == grpc.StatusCode.DEADLINE_EXCEEDED
