"""Every job reaches exactly one terminal state (issue 18, item 4), with the real processes of the stack.

- A render whose worker process is SIGKILLed on every delivery ends `failed` with a reason: the delivery
  the renderer keeps beyond its attempts (`reserve_final_delivery`) fails it instead of running it again.
- A training whose queue message could not be published (the work-queue stream is full and refuses new
  messages) is failed by the trainer's orphan sweeper after its grace period, while a training whose
  message waits in the queue (no worker running) stays `queued`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from nats.js.api import DiscardPolicy

from likeness.bus import RENDER_STREAM, TRAIN_STREAM, Bus
from likeness.config import CommonSettings
from likeness.orphan_sweeper import NEVER_QUEUED_REASON
from likeness_dev.journey import GatewayClient
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack

pytestmark = pytest.mark.slow

TERMINAL = {"succeeded", "failed", "cancelled"}
# Several images, so a delivery is still rendering when the test kills its worker.
INSTANT_RENDER = {
    "instant": True,
    "styles": ["linkedin", "studio_portrait"],
    "images_per_style": 4,
    "seed": 7,
}


def _admin_settings(stack: DevStack) -> CommonSettings:
    env = stack.infra.endpoints.as_env()
    return CommonSettings.model_validate({k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()})


def _with_bus(stack: DevStack, use: Callable[[Bus], Any]) -> Any:
    async def run() -> Any:
        bus = await Bus.connect(_admin_settings(stack).nats_url, "job-terminal-states-test")
        try:
            return await use(bus)
        finally:
            await bus.close()

    return asyncio.run(run())


def _until(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:.0f}s"
        time.sleep(every)


@contextmanager
def _service_with(stack: DevStack, name: str, env: dict[str, str]) -> Iterator[None]:
    """One of the stack's processes restarted with extra settings; restarted as it was afterwards."""
    process = stack.services[name].process
    original = dict(process.env or {})
    stack.stop_service(name)
    process.env = original | env
    try:
        stack.start_service(name)
        yield
    finally:
        stack.stop_service(name)
        process.env = original
        stack.start_service(name)


def _subject_with_photo(gateway: GatewayClient, *purposes: str) -> str:
    subject_id = str(
        gateway.json(
            "POST",
            "/v1/subjects",
            expect=(201,),
            json={"consent": {"purpose": "headshots", "policy_version": "1"}},
        )["id"]
    )
    for purpose in purposes:
        gateway.json(
            "POST",
            f"/v1/subjects/{subject_id}/consents",
            expect=(201,),
            json={"purpose": purpose, "policy_version": "1"},
        )
    files = [("file", (name, data, "application/octet-stream")) for name, data in sample_photos(2)]
    uploaded = gateway.json("POST", f"/v1/subjects/{subject_id}/photos", files=files)["photos"]
    assert all(photo["status"] == "accepted" for photo in uploaded), uploaded
    return subject_id


def _deliveries(stack: DevStack) -> int:
    """How many deliveries the render queue's consumers (one per tenant and priority) have made so far,
    redeliveries included."""

    async def read(bus: Bus) -> int:
        consumers = await bus.js.consumers_info(RENDER_STREAM)
        return sum(int(info.delivered.consumer_seq or 0) for info in consumers)

    return int(_with_bus(stack, read))


def _delivered_at_least(stack: DevStack, count: int) -> bool:
    return _deliveries(stack) >= count


def test_a_render_whose_worker_dies_on_every_delivery_ends_failed_with_a_reason(
    stack: DevStack, gateway: GatewayClient
) -> None:
    subject_id = _subject_with_photo(gateway, "instant")
    attempts = 2
    # AckWait 2 s: a killed delivery comes back 2 s after it was made; 2 attempts, then the kept delivery.
    # The serve role gives the tenant's queue these settings when it queues the job (the worker follows its
    # consumer's); the chart sets them on both roles alike.
    settings = {"LIKENESS_ACK_WAIT_SECONDS": "2", "LIKENESS_MAX_DELIVER": str(attempts)}
    with _service_with(stack, "renderer", settings), _service_with(stack, "renderer-worker", settings):
        before = _deliveries(stack)
        render_id = gateway.json(
            "POST", f"/v1/subjects/{subject_id}/renders", expect=(202,), json=INSTANT_RENDER
        )["id"]
        for attempt in range(1, attempts + 1):
            made = functools.partial(_delivered_at_least, stack, before + attempt)
            _until(made, 120, f"delivery {attempt}", every=0.02)
            stack.kill_service("renderer-worker")
            status = gateway.json("GET", f"/v1/renders/{render_id}")["status"]
            assert status not in TERMINAL, f"delivery {attempt} ended ({status}) before its worker was killed"
            stack.start_service("renderer-worker")

        render = _until(
            lambda: (r := gateway.json("GET", f"/v1/renders/{render_id}"))["status"] in TERMINAL and r,
            120,
            "the render's end",
            every=0.2,
        )
        assert _deliveries(stack) == before + attempts + 1, "the kept delivery failed it, nothing ran again"

    assert render["status"] == "failed", render
    assert render["error"] == f"failed after {attempts} attempts (the worker stopped responding)", render
    assert render["images"] == []


def _queued_trainings(gateway: GatewayClient, subject_id: str) -> dict[str, dict[str, Any]]:
    listing = gateway.json("GET", f"/v1/subjects/{subject_id}/trainings")["trainings"]
    return {training["id"]: training for training in listing}


@contextmanager
def _full_train_stream(stack: DevStack) -> Iterator[None]:
    """The training work queue bounded to the messages it holds, refusing new ones (as a full stream with
    DiscardNew does); its own configuration again afterwards."""

    async def bound(bus: Bus) -> Any:
        info = await bus.js.stream_info(TRAIN_STREAM)
        assert info.state.messages >= 1, "the waiting job fills the bounded stream"
        original = info.config
        await bus.js.update_stream(
            dataclasses.replace(original, max_msgs=info.state.messages, discard=DiscardPolicy.NEW)
        )
        return original

    original = _with_bus(stack, bound)
    try:
        yield
    finally:

        async def restore(bus: Bus) -> None:
            await bus.js.update_stream(original)

        _with_bus(stack, restore)


def test_a_training_whose_publish_failed_is_failed_by_the_sweeper(
    stack: DevStack, gateway: GatewayClient
) -> None:
    subject_id = _subject_with_photo(gateway)
    # Another person's: a second training of the same person would be refused by its quota first (issue 18).
    refused_subject = _subject_with_photo(gateway)
    grace = 3.0
    sweeper = {
        "LIKENESS_JOB_ORPHAN_GRACE_SECONDS": str(grace),
        "LIKENESS_JOB_ORPHAN_SWEEP_INTERVAL_SECONDS": "0.5",
    }
    stack.stop_service("trainer-worker")  # queued jobs wait in the stream meanwhile
    try:
        with _service_with(stack, "trainer", sweeper):
            waiting = gateway.json(
                "POST", f"/v1/subjects/{subject_id}/trainings", expect=(202,), json={"steps": 2}
            )["id"]
            with _full_train_stream(stack):
                refused = gateway.call(
                    "POST",
                    f"/v1/subjects/{refused_subject}/trainings",
                    expect=(500, 502, 503),
                    json={"steps": 2},
                )
            assert refused.status_code >= 500
            orphans = list(_queued_trainings(gateway, refused_subject))
            assert len(orphans) == 1, "the refused submit left its record (the write before the publish)"
            orphan = orphans[0]

            swept = _until(
                lambda: (
                    (t := _queued_trainings(gateway, refused_subject)[orphan])["status"] == "failed" and t
                ),
                30 + grace,
                "the sweeper's failure of the orphan",
                every=0.2,
            )
            assert swept["error"] == NEVER_QUEUED_REASON, swept
            # Well past the grace period, the training whose message waits in the queue is left alone.
            assert _queued_trainings(gateway, subject_id)[waiting]["status"] == "queued"
            gateway.call("POST", f"/v1/trainings/{waiting}/cancel", expect=(200, 202))
    finally:
        stack.start_service("trainer-worker")
