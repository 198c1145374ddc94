"""Tenant quotas on the real stack (issue 18): each quota refuses at its bound, with 429 `quota_exceeded`
naming it and `Retry-After`, and the usage report shows what the tenant has in flight and has spent.

A stack of its own, with its own servers (another stack's workers would take these jobs from shared work
queues) and small limits: 2 trainings and 2 renders in flight per tenant, a cap of 50 steps, and a tenant
(`gpu-tenant`) allowed 1 ms of GPU a day, which its first real training spends. The GPU workers run the
trainings the test needs, then are stopped, so that whatever is queued afterwards stays queued: the
counts are then exact, and no assertion waits on a clock (only polling deadlines).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.js.errors
import pytest

from likeness.bus import TRAIN_STREAM, job_nats_subject
from likeness.quota_policy import seconds_to_utc_midnight
from likeness.quotas import is_per_subject_refusal
from likeness.storage_full import is_storage_full
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack

GPU_TENANT = "gpu-tenant"
DEADLINE_SECONDS = 300.0
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def quota_stack(tmp_path_factory: pytest.TempPathFactory, server_process: None) -> Iterator[DevStack]:
    started = DevStack.start(
        Path(tmp_path_factory.mktemp("quotas")),
        progress=lambda line: print(f"[quota stack] {line}", flush=True),
        extra_env={
            "LIKENESS_INFERENCE_STEPS": "4",
            "LIKENESS_MIN_PHOTOS_FOR_TRAINING": "2",
            "LIKENESS_QUOTA_CONCURRENT_TRAININGS": "2",
            "LIKENESS_QUOTA_CONCURRENT_RENDERS": "2",
            "LIKENESS_QUOTA_TRAINING_STEPS": "50",
            "LIKENESS_QUOTAS": json.dumps({GPU_TENANT: {"gpu_seconds_per_day": 0.001}}),
        },
    )
    try:
        yield started
    finally:
        started.stop()


def _client(stack: DevStack, tenant: str) -> httpx.Client:
    token = stack.mint_token(tenant=tenant)
    return httpx.Client(base_url=stack.gateway_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _subject_with_photos(client: httpx.Client) -> str:
    consent = {"consent": {"purpose": "headshots", "policy_version": "2026-01"}}
    subject: str = client.post("/v1/subjects", json=consent).json()["id"]
    files = [("file", (name, data, "image/jpeg")) for name, data in sample_photos(2)]
    uploaded = client.post(f"/v1/subjects/{subject}/photos", files=files)
    assert uploaded.status_code == 200, uploaded.text
    return subject


def _wait(client: httpx.Client, path: str, done: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        found: dict[str, Any] = client.get(path).json()
        if done(found):
            return found
        assert time.monotonic() < deadline, f"{what}: {found}"
        time.sleep(0.5)


def _train(client: httpx.Client, subject: str, steps: int = 0) -> httpx.Response:
    return client.post(f"/v1/subjects/{subject}/trainings", json={"steps": steps} if steps else {})


def _metrics(stack: DevStack, process: str) -> str:
    return httpx.get(f"{stack.services[process].metrics_url}/metrics", timeout=10).text


def _refused_by(response: httpx.Response) -> str:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded", error
    assert int(response.headers["Retry-After"]) >= 1
    quota: str = error["quota"]
    return quota


@pytest.fixture(scope="module")
def trained(quota_stack: DevStack) -> dict[str, str]:
    """A succeeded training of the dev tenant (renders need one) and one of the GPU tenant (spending its
    day), after which the GPU workers are stopped: nothing queued later runs."""
    tenant = f"quota-{uuid.uuid4().hex[:8]}"
    with _client(quota_stack, tenant) as client, _client(quota_stack, GPU_TENANT) as gpu:
        subject, gpu_subject = _subject_with_photos(client), _subject_with_photos(gpu)
        submitted = _train(client, subject)
        gpu_submitted = _train(gpu, gpu_subject)
        assert (submitted.status_code, gpu_submitted.status_code) == (202, 202), submitted.text
        for who, training in ((client, submitted.json()["id"]), (gpu, gpu_submitted.json()["id"])):
            ended = _wait(who, f"/v1/trainings/{training}", lambda r: r["status"] in TERMINAL, "training")
            assert ended["status"] == "succeeded", ended
        # The worker writes the seconds it held a job (while it runs and when it ends): the report shows them.
        _wait(gpu, "/v1/usage", lambda u: u["gpu_seconds"]["seconds"] > 0.001, "the GPU tenant's seconds")
    worker_metrics = _metrics(quota_stack, "trainer-worker")
    quota_stack.stop_service("trainer-worker")
    quota_stack.stop_service("renderer-worker")
    return {
        "tenant": tenant,
        "subject": subject,
        "training": submitted.json()["id"],
        "gpu_subject": gpu_subject,
        "gpu_training": gpu_submitted.json()["id"],
        "worker_metrics": worker_metrics,
    }


def test_a_training_over_the_steps_cap_is_refused(quota_stack: DevStack, trained: dict[str, str]) -> None:
    with _client(quota_stack, trained["tenant"]) as client:
        assert _refused_by(_train(client, trained["subject"], steps=51)) == "training_steps"


def test_one_active_training_per_subject_and_cancelling_frees_the_place(
    quota_stack: DevStack, trained: dict[str, str]
) -> None:
    with _client(quota_stack, trained["tenant"]) as client:
        subject = _subject_with_photos(client)
        first = _train(client, subject)
        assert first.status_code == 202, first.text
        assert _refused_by(_train(client, subject)) == "active_training_per_subject"
        cancelled = client.post(f"/v1/trainings/{first.json()['id']}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        # The cancelled job's queued message is removed at once: no worker has to reach it first.
        again = _train(client, subject)
        assert again.status_code == 202, again.text
        client.post(f"/v1/trainings/{again.json()['id']}/cancel").raise_for_status()


def test_a_withdrawal_frees_the_place_of_a_queued_training(
    quota_stack: DevStack, trained: dict[str, str]
) -> None:
    """A withdrawn `headshots` grant cancels the person's queued training and frees their one place at
    once: granted again, they may train again, though no worker (they are stopped) ever reached the job."""
    with _client(quota_stack, trained["tenant"]) as client:
        subject = _subject_with_photos(client)
        first = _train(client, subject)
        assert first.status_code == 202, first.text
        consents = f"/v1/subjects/{subject}/consents"
        client.delete(consents, params={"purpose": "headshots"}).raise_for_status()
        ended = _wait(
            client, f"/v1/trainings/{first.json()['id']}", lambda r: r["status"] in TERMINAL, "cancel"
        )
        assert (ended["status"], ended["error"]) == ("cancelled", "consent withdrawn"), ended
        grant = client.post(consents, json={"purpose": "headshots", "policy_version": "2026-01"})
        assert grant.status_code == 201, grant.text
        # The release follows the record's cancellation in the same handler: a short wait, not a worker's.
        deadline = time.monotonic() + 30
        while (again := _train(client, subject)).status_code == 429:
            assert _refused_by(again) == "active_training_per_subject"
            assert time.monotonic() < deadline, "the withdrawn training still holds the person's place"
            time.sleep(0.2)
        assert again.status_code == 202, again.text
        client.post(f"/v1/trainings/{again.json()['id']}/cancel").raise_for_status()


def test_concurrent_trainings_are_bounded_per_tenant(quota_stack: DevStack, trained: dict[str, str]) -> None:
    with _client(quota_stack, trained["tenant"]) as client:
        queued = [_train(client, _subject_with_photos(client)) for _ in range(2)]
        assert [response.status_code for response in queued] == [202, 202], [r.text for r in queued]
        try:
            assert _refused_by(_train(client, trained["subject"])) == "concurrent_trainings"
            usage = client.get("/v1/usage").json()
            assert usage["trainings"] == {"in_flight": 2, "limit": 2}
            assert usage["max_training_steps"] == 50
        finally:
            for response in queued:
                client.post(f"/v1/trainings/{response.json()['id']}/cancel").raise_for_status()
    # Another tenant's places are its own.
    with _client(quota_stack, f"other-{uuid.uuid4().hex[:8]}") as other:
        usage = other.get("/v1/usage").json()
        assert usage["trainings"]["in_flight"] == 0


def test_concurrent_renders_are_bounded_per_tenant(quota_stack: DevStack, trained: dict[str, str]) -> None:
    body = {"training_id": trained["training"], "styles": ["linkedin"], "images_per_style": 1}
    path = f"/v1/subjects/{trained['subject']}/renders"
    with _client(quota_stack, trained["tenant"]) as client:
        accepted = [client.post(path, json=body) for _ in range(2)]
        assert [response.status_code for response in accepted] == [202, 202], [r.text for r in accepted]
        assert _refused_by(client.post(path, json=body)) == "concurrent_renders"
        assert client.get("/v1/usage").json()["renders"] == {"in_flight": 2, "limit": 2}


def test_gpu_seconds_per_day_refuse_until_utc_midnight(
    quota_stack: DevStack, trained: dict[str, str]
) -> None:
    with _client(quota_stack, GPU_TENANT) as gpu:
        usage = gpu.get("/v1/usage").json()
        assert usage["gpu_seconds"]["seconds"] > usage["gpu_seconds"]["limit"] == 0.001
        body = {"training_id": trained["gpu_training"], "styles": ["linkedin"], "images_per_style": 1}
        before = seconds_to_utc_midnight(datetime.now(UTC))
        render = gpu.post(f"/v1/subjects/{trained['gpu_subject']}/renders", json=body)
        after = seconds_to_utc_midnight(datetime.now(UTC))
        assert _refused_by(render) == "gpu_seconds_per_day"
        assert after <= int(render.headers["Retry-After"]) <= before
        assert _refused_by(_train(gpu, _subject_with_photos(gpu))) == "gpu_seconds_per_day"


def test_refusals_are_counted_by_tenant_and_quota_only(
    quota_stack: DevStack, trained: dict[str, str]
) -> None:
    with _client(quota_stack, trained["tenant"]) as client:
        _refused_by(_train(client, trained["subject"], steps=51))
    metrics = _metrics(quota_stack, "trainer")
    line = f'likeness_quota_refusals_total{{quota="training_steps",tenant="{trained["tenant"]}"}}'
    assert line in metrics, "the refusal is counted"
    assert trained["subject"] not in metrics, "no subject in a label"


def test_workers_count_gpu_seconds_by_tenant_and_queue_only(trained: dict[str, str]) -> None:
    metrics = trained["worker_metrics"]
    held = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(f'likeness_tenant_gpu_seconds_total{{queue="train",tenant="{GPU_TENANT}"}}')
    ]
    assert len(held) == 1, "one series per tenant and queue"
    assert held[0] > 0.001, "the worker counted the seconds it held the GPU tenant's training"
    assert trained["gpu_subject"] not in metrics, "no subject in a label"


def test_the_train_stream_itself_refuses_a_second_job_of_a_person(
    quota_stack: DevStack, trained: dict[str, str]
) -> None:
    """What makes one training per person hold against two submits at once: the server's per-subject
    bound, refused with an error told apart from a full stream (so the submit answers 429, not 503)."""

    async def publish_twice() -> BaseException | None:
        nc = await nats.connect(quota_stack.infra.endpoints.nats_url)
        nats_subject = job_nats_subject("train", trained["tenant"], f"sub_{uuid.uuid4().hex[:26]}")
        try:
            js = nc.jetstream()
            await js.publish(nats_subject, b"first", headers={"Nats-Msg-Id": uuid.uuid4().hex})
            try:
                await js.publish(nats_subject, b"second", headers={"Nats-Msg-Id": uuid.uuid4().hex})
            except nats.js.errors.APIError as refused:
                return refused
            return None
        finally:
            await nc.jetstream().purge_stream(TRAIN_STREAM, subject=nats_subject)
            await nc.close()

    refused = asyncio.run(publish_twice())
    assert refused is not None, "a second message on the person's subject is refused"
    assert is_per_subject_refusal(refused)
    assert not is_storage_full(refused)
