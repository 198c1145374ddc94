"""The backing servers fail in the middle of a journey: NATS restarts, S3 goes away for 10 s, Vault hangs.

- `nats-server` restarted while a training runs: JetStream's file store keeps the streams, the consumers
  and the KV records; every service reconnects; the training and a render queued during the outage
  finish once, and no event is lost.
- S3 stopped for 10 s while a training writes checkpoints: the object store retries with backoff and the
  journey completes with one LoRA.
- Vault frozen (SIGSTOP; a dev-mode OpenBao keeps its keys in memory only, so restarting it would
  erase everyone): requests that need a key fail closed with 503 and `Retry-After`, the photo sent
  meanwhile is not stored in any form, and the same requests succeed once Vault answers again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from likeness.bus import RENDER_STREAM, TRAIN_STREAM
from likeness_dev.infra import NATS, S3, VAULT
from likeness_dev.leaks import photo_secrets, scan_plaintext
from likeness_dev.samples import sample_photos

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

Until = Callable[..., Any]
S3_OUTAGE_SECONDS = 10.0


def _names(kit: Any, subject_id: str) -> list[str]:
    return [name for _, name, _ in kit.events(subject_id) if name != "training.progress"]


@pytest.mark.chaos_ci
def test_a_nats_restart_mid_journey_loses_no_job_and_no_event(kit: Any, wait_until: Until) -> None:
    subject_id = kit.open_subject()
    before = _names(kit, subject_id)
    training_id = kit.train(subject_id, 16)
    wait_until(
        lambda: kit.gateway.json("GET", f"/v1/trainings/{training_id}")["status"] == "running",
        120,
        "the training's start",
    )
    infra = kit.stack.infra
    infra.stop_server(NATS)
    infra.start_server(NATS)

    training = kit.ended(f"/v1/trainings/{training_id}")
    assert training["status"] == "succeeded", training
    render_id = kit.render(subject_id, training_id, ["linkedin"], 2)
    render = kit.ended(f"/v1/renders/{render_id}")
    assert render["status"] == "succeeded", render
    assert len(kit.download(render)) == 2
    wait_until(lambda: kit.queue_idle(TRAIN_STREAM), 60, "the trainer's ack")
    wait_until(lambda: kit.queue_idle(RENDER_STREAM), 60, "the renderer's ack")

    names = _names(kit, subject_id)
    assert names[: len(before)] == before, "the events from before the restart are still there"
    assert names.count("training.completed") == 1, names
    assert names.count("render.completed") == 1, names
    assert [found.key.rsplit("/", 1)[1] for found in kit.versions(subject_id, f"models/{training_id}/")] == [
        "faces",
        "lora",
    ], "one LoRA and its face templates, one version each"
    kit.erase(subject_id)


def test_s3_down_for_10_seconds_mid_training_and_the_journey_completes(kit: Any, wait_until: Until) -> None:
    subject_id = kit.open_subject()
    training_id = kit.train(subject_id, 24)
    models = f"models/{training_id}/"
    wait_until(lambda: kit.versions(subject_id, models), 120, "a first checkpoint")
    infra = kit.stack.infra
    infra.stop_server(S3)
    time.sleep(S3_OUTAGE_SECONDS)  # the training goes on; its checkpoint uploads retry meanwhile
    infra.start_server(S3)

    training = kit.ended(f"/v1/trainings/{training_id}")
    assert training["status"] == "succeeded", training
    render_id = kit.render(subject_id, training_id, ["linkedin"], 2)
    render = kit.ended(f"/v1/renders/{render_id}")
    assert render["status"] == "succeeded", render
    assert len(kit.download(render)) == 2
    assert [found.key.rsplit("/", 1)[1] for found in kit.versions(subject_id, models)] == ["faces", "lora"]
    erasure = kit.erase(subject_id)
    assert erasure["status"] == "completed"


def test_vault_hung_fails_closed_with_503_and_recovers(kit: Any, wait_until: Until) -> None:
    subject_id = kit.open_subject(photos=0)
    photo = sample_photos(3)[2:]
    kit.ledger.add_photos(photo)
    files = [("file", (name, data, "application/octet-stream")) for name, data in photo]
    infra = kit.stack.infra
    infra.pause_server(VAULT)
    try:
        opened = kit.gateway.http.post(
            "/v1/subjects", json={"consent": {"purpose": "headshots", "policy_version": "chaos"}}
        )
        uploaded = kit.gateway.http.post(f"/v1/subjects/{subject_id}/photos", files=files)
        for response in (opened, uploaded):
            assert response.status_code == 503, response.text
            assert response.headers.get("retry-after", "").isdigit(), dict(response.headers)
            assert response.json()["error"]["code"] == "unavailable"
        # Fail closed: the photo sent while no key could be had was not stored in any form.
        assert kit.versions(subject_id) == []
        endpoints = infra.endpoints
        scan = scan_plaintext(
            [endpoints.s3_data_dir, endpoints.nats_store_dir, kit.stack.tmp_dir], photo_secrets(photo)
        )
        assert scan.findings == [], [str(finding) for finding in scan.findings]
    finally:
        infra.resume_server(VAULT)

    uploaded_after = kit.upload(subject_id, photo)
    assert [verdict["status"] for verdict in uploaded_after] == ["accepted"], uploaded_after
    another = kit.open_subject(photos=0)
    kit.erase(another)
    kit.erase(subject_id)
