"""The asyncio client against an in-process ASGI app that follows the gateway's contract: pagination,
Server-Sent Events (heartbeats, progress, end), 429 with Retry-After, idempotency keys, downloads."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from likeness_client import AsyncLikenessClient, Gone, RateLimited, RetryPolicy


def render(status: str, step: int) -> dict[str, Any]:
    return {
        "id": "ren_1",
        "subject_id": "sub_1",
        "training_id": "trn_1",
        "status": status,
        "styles": ["linkedin"],
        "images_per_style": 2,
        "progress": {"step": step, "total_steps": 2},
        "images": [],
        "error": None,
    }


class FakeGateway:
    """Just enough of the v1 contract, with counters to look at."""

    def __init__(self) -> None:
        self.subjects = [f"sub_{n}" for n in range(5)]
        self.seen_keys: list[str] = []
        self.limited_once = False
        self.app = Starlette(
            routes=[
                Route("/v1/subjects", self.list_subjects, methods=["GET"]),
                Route("/v1/subjects/{subject_id}/renders", self.create_render, methods=["POST"]),
                Route("/v1/renders/{render_id}/events", self.render_events, methods=["GET"]),
                Route("/v1/subjects/{subject_id}/export", self.export, methods=["GET"]),
            ]
        )

    async def list_subjects(self, request: Request) -> Response:
        limit = int(request.query_params.get("limit", "50"))
        start = int(request.query_params.get("cursor") or 0)
        chosen = self.subjects[start : start + limit]
        following = start + limit if start + limit < len(self.subjects) else None
        return JSONResponse(
            {
                "subjects": [{"id": s, "status": "active"} for s in chosen],
                "next_cursor": None if following is None else str(following),
            }
        )

    async def create_render(self, request: Request) -> Response:
        self.seen_keys.append(request.headers["idempotency-key"])
        if not self.limited_once:
            self.limited_once = True
            return JSONResponse(
                {"error": {"code": "rate_limited", "message": "Slow down."}},
                429,
                headers={"Retry-After": "1"},
            )
        body = json.loads(await request.body())
        assert body == {"training_id": "trn_1", "styles": ["linkedin"], "images_per_style": 2, "seed": 7}
        return JSONResponse({"id": "ren_1", "status": "queued"}, 202)

    async def render_events(self, request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            yield b": connected\n\n"
            for status, step in (("queued", 0), ("running", 1), ("running", 2)):
                yield f"event: progress\r\ndata: {json.dumps(render(status, step))}\r\n\r\n".encode()
                yield b": heartbeat\n\n"
            yield f"event: end\ndata: {json.dumps(render('succeeded', 2))}\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    async def export(self, request: Request) -> Response:
        if request.path_params["subject_id"] == "sub_gone":
            return JSONResponse({"error": {"code": "subject_erased", "message": "Erased."}}, 410)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("subject.json", json.dumps({"id": "sub_1"}))

        async def chunks() -> AsyncIterator[bytes]:
            data = buffer.getvalue()
            for start in range(0, len(data), 7):
                yield data[start : start + 7]

        return StreamingResponse(chunks(), media_type="application/zip")


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
async def client(gateway: FakeGateway) -> AsyncIterator[AsyncLikenessClient]:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    transport = httpx.ASGITransport(app=gateway.app)
    async with AsyncLikenessClient(
        "http://gateway.test", "tok", transport=transport, sleep=sleep, retry=RetryPolicy(random=lambda: 0.0)
    ) as made:
        made.sleeps = sleeps  # type: ignore[attr-defined]
        yield made


async def test_async_iteration_follows_cursors(client: AsyncLikenessClient) -> None:
    ids = [subject.id async for subject in client.iter_subjects(page_size=2)]
    assert ids == [f"sub_{n}" for n in range(5)]
    page = await client.list_subjects(limit=3)
    assert page.next_cursor == "3"
    assert len(page.items) == 3


async def test_async_post_retries_429_with_the_same_key(
    client: AsyncLikenessClient, gateway: FakeGateway
) -> None:
    accepted = await client.create_render(
        "sub_1", training_id="trn_1", styles=["linkedin"], images_per_style=2, seed=7
    )
    assert accepted.id == "ren_1"
    assert accepted.status == "queued"
    assert len(gateway.seen_keys) == 2
    assert len(set(gateway.seen_keys)) == 1
    assert client.sleeps == [1.0]  # type: ignore[attr-defined]


async def test_async_watch_reads_a_real_event_stream(client: AsyncLikenessClient) -> None:
    states = [(r.status, r.progress.step) async for r in client.watch_render("ren_1")]
    assert states == [("queued", 0), ("running", 1), ("running", 2), ("succeeded", 2)]


async def test_async_export_streams_a_zip(client: AsyncLikenessClient, tmp_path: Path) -> None:
    target = tmp_path / "out.zip"
    size = await client.export_subject("sub_1", target)
    assert size == target.stat().st_size
    with zipfile.ZipFile(target) as archive:
        assert json.loads(archive.read("subject.json")) == {"id": "sub_1"}
    with pytest.raises(Gone) as raised:
        await client.export_subject("sub_gone", tmp_path / "gone.zip")
    assert raised.value.code == "subject_erased"
    assert not (tmp_path / "gone.zip").exists()


async def test_async_rate_limit_is_raised_when_retries_run_out(gateway: FakeGateway) -> None:
    transport = httpx.ASGITransport(app=gateway.app)

    async def no_sleep(seconds: float) -> None:
        return None

    async with AsyncLikenessClient(
        "http://gateway.test", "tok", transport=transport, sleep=no_sleep, retry=RetryPolicy(max_attempts=1)
    ) as client:
        with pytest.raises(RateLimited) as raised:
            await client.create_render("sub_1", training_id="trn_1", styles=["linkedin"])
    assert raised.value.retry_after == 1.0
