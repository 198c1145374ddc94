"""The trainer survives a killed worker and forgets an erased person, with the real processes of the stack.

A `trainer-worker` process is SIGKILLed after the first checkpoint of a job and started again: the job
resumes from its newest checkpoint and ends with exactly one LoRA (one version) and one
`training.completed`. A person erased while their training runs leaves nothing behind: no object under
their prefix, no training record, no training event.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import nats.js.errors
import pytest
from google.protobuf.message import Message

from likeness.bus import EVENTS_STREAM, TRAIN_STREAM, Bus, event_nats_subject
from likeness.config import CommonSettings
from likeness.jobs import JobRecords
from likeness.object_names import subject_prefix
from likeness.store import ObjectStore
from likeness.v1 import events_pb2, trainer_pb2
from likeness_dev.journey import GatewayClient
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_dev.tokens import DEV_TENANT

pytestmark = pytest.mark.slow

WORKER = "trainer-worker"
EVENT_TYPES: dict[str, type[Message]] = {
    "progress": events_pb2.TrainingProgress,
    "completed": events_pb2.TrainingCompleted,
    "failed": events_pb2.TrainingFailed,
}


def _settings(stack: DevStack) -> CommonSettings:
    env = stack.infra.endpoints.as_env()
    return CommonSettings.model_validate({k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()})


@pytest.fixture(scope="module")
def store(stack: DevStack) -> ObjectStore:
    return ObjectStore.from_settings(_settings(stack))


@pytest.fixture
def subject_id(gateway: GatewayClient) -> str:
    subject = gateway.json(
        "POST",
        "/v1/subjects",
        expect=(201,),
        json={"consent": {"purpose": "headshots", "policy_version": "1"}},
    )
    files = [("file", (name, data, "application/octet-stream")) for name, data in sample_photos(2)]
    uploaded = gateway.json("POST", f"/v1/subjects/{subject['id']}/photos", files=files)["photos"]
    assert all(photo["status"] == "accepted" for photo in uploaded), uploaded
    return str(subject["id"])


async def _with_bus(stack: DevStack, use: Callable[[Bus], Any]) -> Any:
    bus = await Bus.connect(_settings(stack).nats_url, "trainer-resilience-test")
    try:
        return await use(bus)
    finally:
        await bus.close()


def _training_events(stack: DevStack, subject_id: str) -> list[tuple[int, str, Any]]:
    """(stream sequence, kind, event) of every training event of the subject still in the stream."""

    async def read(bus: Bus) -> list[tuple[int, str, Any]]:
        found: list[tuple[int, str, Any]] = []
        sequence = 1
        while True:
            try:
                message = await bus.js.get_msg(
                    EVENTS_STREAM,
                    seq=sequence,
                    subject=event_nats_subject(DEV_TENANT, subject_id, "training.>"),
                    next=True,
                )
            except nats.js.errors.NotFoundError:
                return found
            kind = str(message.subject).rsplit(".", 1)[1]
            event = EVENT_TYPES[kind]()
            event.ParseFromString(message.data or b"")
            found.append((int(message.seq or 0), kind, event))
            sequence = int(message.seq or sequence) + 1

    result: list[tuple[int, str, Any]] = asyncio.run(_with_bus(stack, read))
    return result


def _training_record(stack: DevStack, training_id: str) -> trainer_pb2.Training | None:
    async def read(bus: Bus) -> trainer_pb2.Training | None:
        found = await JobRecords(await bus.kv("trainings"), trainer_pb2.Training).get(DEV_TENANT, training_id)
        return found[0] if found else None

    result: trainer_pb2.Training | None = asyncio.run(_with_bus(stack, read))
    return result


def _queue_idle(stack: DevStack) -> bool:
    """No train job waiting or held by a worker (a cancelled job is terminated, a finished one acked)."""

    async def read(bus: Bus) -> bool:
        # A work queue keeps a job's message until it is acknowledged or terminated, whatever its tenant.
        return not (await bus.js.stream_info(TRAIN_STREAM)).state.messages

    return bool(asyncio.run(_with_bus(stack, read)))


def _until(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:.0f}s"
        time.sleep(every)


@contextmanager
def _worker_with(stack: DevStack, env: dict[str, str]) -> Iterator[None]:
    """The stack's trainer worker restarted with extra settings; restarted as it was afterwards."""
    process = stack.services[WORKER].process
    original = dict(process.env or {})
    stack.stop_service(WORKER)
    process.env = original | env
    try:
        stack.start_service(WORKER)
        yield
    finally:
        stack.stop_service(WORKER)
        process.env = original
        stack.start_service(WORKER)


def _ended(gateway: GatewayClient, training_id: str) -> dict[str, Any] | None:
    training = gateway.json("GET", f"/v1/trainings/{training_id}")
    return training if training["status"] in {"succeeded", "failed", "cancelled"} else None


def _models_prefix(subject_id: str, training_id: str) -> str:
    return f"{subject_prefix(DEV_TENANT, subject_id)}models/{training_id}/"


def _checkpoints(store: ObjectStore, subject_id: str, training_id: str) -> list[int]:
    prefix = _models_prefix(subject_id, training_id) + "ckpt-"
    return sorted(int(found.key.removeprefix(prefix)) for found in store.list_current(prefix))


def test_a_killed_worker_is_resumed_from_its_checkpoint_with_one_lora_and_one_completion(
    stack: DevStack, gateway: GatewayClient, store: ObjectStore, subject_id: str
) -> None:
    steps = 12  # the tiny preset checkpoints every 2 steps
    # AckWait 3 s: JetStream redelivers the killed worker's job 3 s after its last heartbeat (a consumer's
    # AckWait only applies to deliveries made after it changed, so it is set before the job is queued).
    # Every step's progress is published, so the test sees exactly where the restarted worker began.
    settings = {"LIKENESS_ACK_WAIT_SECONDS": "3", "LIKENESS_PROGRESS_INTERVAL_SECONDS": "0"}
    with _worker_with(stack, settings):
        training_id = gateway.json(
            "POST", f"/v1/subjects/{subject_id}/trainings", expect=(202,), json={"steps": steps}
        )["id"]
        _until(lambda: _checkpoints(store, subject_id, training_id), 120, "a first checkpoint")
        process = stack.services[WORKER].process
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        process.stop()  # reaps it
        stored = _checkpoints(store, subject_id, training_id)
        before_restart = _training_events(stack, subject_id)
        assert gateway.json("GET", f"/v1/trainings/{training_id}")["status"] == "running", (
            "killed mid-job (the job was not over yet)"
        )
        models = store.list_versions(_models_prefix(subject_id, training_id))
        assert not any(found.key.endswith("/lora") for found in models)

        stack.start_service(WORKER)
        training = _until(lambda: _ended(gateway, training_id), 180, "the resumed training's end", every=0.2)
        _until(lambda: _queue_idle(stack), 30, "the worker's ack")

    assert training["status"] == "succeeded", training
    versions = store.list_versions(_models_prefix(subject_id, training_id))
    assert [found.key.rsplit("/", 1)[1] for found in versions] == ["faces", "lora"], (
        "one LoRA and its face templates, one version each, no checkpoint"
    )

    events = _training_events(stack, subject_id)
    completions = [event for _, kind, event in events if kind == "completed"]
    assert [event.training_id for event in completions] == [training_id], "exactly one completion event"
    last_before = max((sequence for sequence, _, _ in before_restart), default=0)
    resumed = [
        event.step for sequence, kind, event in events if kind == "progress" and sequence > last_before
    ]
    assert resumed, "the restarted worker reported progress"
    resumed_from = resumed[0] - 1  # a run's first step always reports
    assert resumed_from > 0, "it did not start over"
    # From the newest checkpoint the killed worker stored (one whose upload was just ending may count).
    assert resumed_from % 2 == 0, "it continued right after a checkpoint (every 2 steps)"
    assert resumed_from >= max(stored), "from the newest one"
    assert resumed == list(range(resumed_from + 1, steps + 1))

    record = _training_record(stack, training_id)
    assert record is not None
    assert len(record.report.losses) == steps, "the loss curve covers the steps before the kill too"
    if "resumed_from_step" in record.report.DESCRIPTOR.fields_by_name:
        assert record.report.resumed_from_step == resumed_from


def test_erasure_during_training_leaves_nothing_of_the_person(
    stack: DevStack, gateway: GatewayClient, store: ObjectStore, subject_id: str
) -> None:
    training_id = gateway.json(
        "POST", f"/v1/subjects/{subject_id}/trainings", expect=(202,), json={"steps": 2000}
    )["id"]
    _until(lambda: _checkpoints(store, subject_id, training_id), 120, "a first checkpoint")

    erasure_id = gateway.json("DELETE", f"/v1/subjects/{subject_id}", expect=(202,))["erasure_id"]
    _until(
        lambda: gateway.json("GET", f"/v1/erasures/{erasure_id}")["status"] == "completed",
        60,
        "the erasure",
        every=0.2,
    )
    _until(lambda: _queue_idle(stack), 60, "the worker letting go of the job")
    _until(lambda: _training_record(stack, training_id) is None, 30, "the training record's removal")

    assert store.list_versions(subject_prefix(DEV_TENANT, subject_id)) == [], "no object, no version"
    assert _training_events(stack, subject_id) == [], "no training event"
    assert gateway.call("GET", f"/v1/trainings/{training_id}", expect=(404, 410)).status_code in (404, 410)
