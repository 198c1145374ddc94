"""Progress as Server-Sent Events: `GET /v1/trainings/{id}/events` and `GET /v1/renders/{id}/events`.

The stream first sends the current state, then every change, each as an event `progress` whose data is
the resource exactly as its GET returns it; the terminal state comes as event `end`, then the stream
closes. Changes are noticed from the subject's domain events on NATS (`evt.<tenant>.<subject>.training.*`,
`.render.*`; a plain subscription, nothing is created on the server), and the state is re-read every
`sse_poll_seconds` as well (renders announce only their end). A comment line every
`sse_heartbeat_seconds` keeps proxies from closing a quiet stream. If the resource goes away (the subject
is erased), an `error` event carries the error envelope and the stream closes; so it does when the token
expires or after `sse_max_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from gateway import access, convert
from gateway.auth import Principal
from gateway.backends import Backends as BackendClients
from gateway.config import GatewaySettings
from gateway.contract import answers
from gateway.deps import Backends, Nats, RendersRead, TrainingsRead
from gateway.errors import ApiError, from_grpc
from gateway.metrics import Metrics
from gateway.nats_link import NatsLink
from gateway.request_context import current_request_id
from likeness.bus import event_nats_subject
from likeness.jobs import TERMINAL

router = APIRouter(tags=["progress"])


def _event(name: str, body: str) -> dict[str, Any]:
    """One kind of event, as OpenAPI describes an event stream's events: `data` is JSON of `body`."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"const": name},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": f"#/components/schemas/{body}"},
            },
        },
    }


def _stream_doc(resource: str, example_id: str) -> dict[int | str, dict[str, Any]]:
    """The 200 of an event stream of `resource` (a schema name: `Training`, `Render`)."""
    return {
        200: {
            "description": "`text/event-stream`: `event: progress` with the resource's JSON on every "
            "change, then `event: end` with the final state (or `event: error` with an error envelope); "
            "comment lines (`: keep-alive`) every 15 s",
            "content": {
                "text/event-stream": {
                    # Each event (Open API 3.1 reading: the schema of an event stream is one event's).
                    "schema": {
                        "oneOf": [
                            _event("progress", resource),
                            _event("end", resource),
                            _event("error", "ErrorResponse"),
                        ]
                    },
                    "example": f'event: progress\ndata: {{"id": "{example_id}", "status": "running"}}\n\n'
                    f'event: end\ndata: {{"id": "{example_id}", "status": "succeeded"}}\n\n',
                }
            },
        }
    }


Snapshot = Callable[[], Awaitable[tuple[BaseModel, bool]]]


def _frame(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _stream(
    request: Request,
    principal: Principal,
    nats: NatsLink,
    trigger_subject: str,
    first: BaseModel,
    first_done: bool,
    snapshot: Snapshot,
) -> StreamingResponse:
    settings = cast(GatewaySettings, request.app.state.settings)
    metrics = cast(Metrics, request.app.state.metrics)
    # Subscribed before the first state is sent, so no change between the two is missed.
    subscription = nats.subscribe(trigger_subject)
    triggers = await subscription.__aenter__()

    async def frames() -> AsyncIterator[bytes]:
        metrics.event_streams.inc()
        started = time.monotonic()
        ends_at = started + settings.sse_max_seconds
        if principal.expires_at is not None:
            ends_at = min(ends_at, started + max(0.0, principal.expires_at - time.time()))
        try:
            last = first.model_dump(mode="json")
            if first_done:
                yield _frame("end", last)
                return
            yield _frame("progress", last)
            last_sent = time.monotonic()
            while True:
                now = time.monotonic()
                if now >= ends_at:
                    return
                wait = min(settings.sse_poll_seconds, ends_at - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(triggers.get(), timeout=wait)
                    while not triggers.empty():  # a burst of events needs one read
                        triggers.get_nowait()
                try:
                    current, done = await snapshot()
                except ApiError as gone:
                    yield _frame("error", _error(gone))
                    return
                except grpc.aio.AioRpcError as failed:
                    error = from_grpc(failed)
                    if error.status >= 500:
                        continue  # a backend blip: keep the stream and try again at the next tick
                    yield _frame("error", _error(error))
                    return
                data = current.model_dump(mode="json")
                if done:
                    yield _frame("end", data)
                    return
                if data != last:
                    last = data
                    last_sent = time.monotonic()
                    yield _frame("progress", data)
                elif time.monotonic() - last_sent >= settings.sse_heartbeat_seconds:
                    last_sent = time.monotonic()
                    yield b": keep-alive\n\n"
        finally:
            metrics.event_streams.dec()
            await subscription.__aexit__(None, None, None)

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},  # proxies must pass each event on at once
    )


def _error(error: ApiError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, "request_id": current_request_id()}}


async def _training_state(
    backends: BackendClients, principal: Principal, training_id: str
) -> tuple[BaseModel, bool]:
    training = await access.owned_training(backends, principal, training_id)
    return convert.training(training), training.status in TERMINAL


async def _render_state(
    backends: BackendClients, principal: Principal, render_id: str
) -> tuple[BaseModel, bool]:
    render = await access.owned_render(backends, principal, render_id)
    return convert.render(render), render.status in TERMINAL


@router.get(
    "/v1/trainings/{training_id}/events",
    summary="Follow a training as Server-Sent Events until it ends",
    description="Scope `trainings:read`. Event `progress`: the training as `GET /v1/trainings/{id}` "
    "returns it, on every change (the first is the current state); event `end`: the final state, then "
    "the stream closes.",
    response_class=StreamingResponse,
    responses={**_stream_doc("Training", "trn_..."), **answers("not_found", "subject_erased")},
)
async def training_events(
    training_id: str, request: Request, principal: TrainingsRead, backends: Backends, nats: Nats
) -> StreamingResponse:
    training = await access.owned_training(backends, principal, training_id)
    trigger = event_nats_subject(principal.tenant, training.subject_id, "training.*")
    return await _stream(
        request,
        principal,
        nats,
        trigger,
        convert.training(training),
        training.status in TERMINAL,
        lambda: _training_state(backends, principal, training_id),
    )


@router.get(
    "/v1/renders/{render_id}/events",
    summary="Follow a render as Server-Sent Events until it ends",
    description="Scope `renders:read`. Event `progress`: the render as `GET /v1/renders/{id}` returns it, "
    "on every change (the first is the current state); event `end`: the final state, then the stream "
    "closes.",
    response_class=StreamingResponse,
    responses={**_stream_doc("Render", "ren_..."), **answers("not_found", "subject_erased")},
)
async def render_events(
    render_id: str, request: Request, principal: RendersRead, backends: Backends, nats: Nats
) -> StreamingResponse:
    render = await access.owned_render(backends, principal, render_id)
    trigger = event_nats_subject(principal.tenant, render.subject_id, "render.*")
    return await _stream(
        request,
        principal,
        nats,
        trigger,
        convert.render(render),
        render.status in TERMINAL,
        lambda: _render_state(backends, principal, render_id),
    )
