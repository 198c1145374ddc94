"""SIGKILL of each worker and serve process in the middle of its job: the job still ends exactly once.

- trainer `work`: one LoRA object (one version, no checkpoint left), one `training.completed`.
- renderer `work`: one set of images (each recorded image stored once, nothing else under the render),
  one `render.completed`.
- ingest `serve` mid-upload: the upload fails with a 5xx and can be sent again; each photo ends up
  accepted once (a retry of one that made it is refused as a duplicate); the erasure leaves nothing.
- retention `serve` mid-erasure: the erasure resumes after the restart and completes once; nothing of the
  person is left and `subject.erased` is announced once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import hvac.exceptions
import pytest

from likeness.bus import RENDER_STREAM, TRAIN_STREAM
from likeness.v1 import events_pb2
from likeness_dev.samples import sample_photos

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

Until = Callable[..., Any]


def _render_completions(kit: Any, subject_id: str, render_id: str) -> int:
    count = 0
    for _, _, data in kit.events(subject_id, "render.completed"):
        event = events_pb2.RenderCompleted()
        event.ParseFromString(data)
        count += event.render_id == render_id
    return count


def _training_completions(kit: Any, subject_id: str, training_id: str) -> int:
    count = 0
    for _, _, data in kit.events(subject_id, "training.completed"):
        event = events_pb2.TrainingCompleted()
        event.ParseFromString(data)
        count += event.training_id == training_id
    return count


def test_a_killed_trainer_worker_ends_with_one_lora_and_one_completion(kit: Any, wait_until: Until) -> None:
    subject_id = kit.open_subject()
    steps = 16  # the tiny preset checkpoints every 2 steps
    training_id = kit.train(subject_id, steps)
    models = f"models/{training_id}/"
    wait_until(
        lambda: any("/ckpt-" in found.key for found in kit.versions(subject_id, models)), 120, "a checkpoint"
    )
    kit.stack.kill_service("trainer-worker")
    assert kit.gateway.json("GET", f"/v1/trainings/{training_id}")["status"] == "running", "killed mid-job"
    assert not any(found.key.endswith("/lora") for found in kit.versions(subject_id, models))

    kit.stack.start_service("trainer-worker")
    training = kit.ended(f"/v1/trainings/{training_id}")
    wait_until(lambda: kit.queue_idle(TRAIN_STREAM), 60, "the worker's ack")

    assert training["status"] == "succeeded", training
    assert [found.key.rsplit("/", 1)[1] for found in kit.versions(subject_id, models)] == ["faces", "lora"], (
        "one LoRA and its face templates, one version each, no checkpoint"
    )
    assert _training_completions(kit, subject_id, training_id) == 1, "exactly one completion event"
    kit.erase(subject_id)


@pytest.mark.chaos_ci
def test_a_killed_renderer_worker_ends_with_one_set_of_images_and_one_completion(
    kit: Any, wait_until: Until
) -> None:
    subject_id = kit.open_subject()
    training_id = kit.train(subject_id, 4)
    assert kit.ended(f"/v1/trainings/{training_id}")["status"] == "succeeded"
    styles = [style["id"] for style in kit.gateway.json("GET", "/v1/styles")["styles"]][:4]
    per_style = 4
    render_id = kit.render(subject_id, training_id, styles, per_style)
    renders = f"renders/{render_id}/"
    # Killed once the first style's images are stored: the job is well under way, not over.
    wait_until(lambda: kit.versions(subject_id, renders), 180, "a first stored image", every=0.05)
    kit.stack.kill_service("renderer-worker")
    assert kit.gateway.json("GET", f"/v1/renders/{render_id}")["status"] == "running", "killed mid-job"

    kit.stack.start_service("renderer-worker")
    render = kit.ended(f"/v1/renders/{render_id}")
    wait_until(lambda: kit.queue_idle(RENDER_STREAM), 60, "the worker's ack")

    assert render["status"] == "succeeded", render
    recorded = sorted(image["id"] for image in render["images"])
    assert len(recorded) == len(styles) * per_style, "one set: each style's images once"
    stored = kit.versions(subject_id, renders)
    assert sorted(found.key.rsplit("/", 1)[1] for found in stored) == recorded, (
        "exactly the recorded images are stored, each with one version (nothing of the killed attempt)"
    )
    assert _render_completions(kit, subject_id, render_id) == 1, "exactly one completion event"
    assert all(data for data in kit.download(render))
    kit.erase(subject_id)


def test_a_killed_ingest_mid_upload_leaves_each_photo_accepted_once(kit: Any, wait_until: Until) -> None:
    subject_id = kit.open_subject(photos=0)
    photos = sample_photos(4)
    kit.ledger.add_photos(photos)
    files = [("file", (name, data, "application/octet-stream")) for name, data in photos]

    outcome: dict[str, Any] = {}

    def upload() -> None:
        try:
            outcome["response"] = kit.gateway.http.post(f"/v1/subjects/{subject_id}/photos", files=files)
        except Exception as error:  # the connection may be cut: that is a failed upload too
            outcome["error"] = error

    sender = threading.Thread(target=upload)
    sender.start()
    wait_until(lambda: kit.events(subject_id, "photo.accepted"), 120, "a first accepted photo", every=0.02)
    kit.stack.kill_service("ingest")
    sender.join(timeout=120)
    assert not sender.is_alive()
    response = outcome.get("response")
    if response is not None and response.status_code == 200:
        pytest.fail("the upload finished before ingest was killed: nothing was tested")
    if response is not None:
        assert response.status_code in (502, 503, 504), response.text

    kit.stack.start_service("ingest")
    retried = kit.upload(subject_id, photos, expect=(200, 422))
    verdicts = [photo["status"] for photo in retried]
    listed = kit.gateway.json("GET", f"/v1/subjects/{subject_id}/photos")["photos"]
    accepted = [photo for photo in listed if photo["status"] == "accepted"]
    assert len(accepted) == len(photos), f"each photo accepted exactly once: {listed}, retry: {verdicts}"
    stored = {found.key.rsplit("/", 1)[1] for found in kit.versions(subject_id, "photos/")}
    assert {photo["id"] for photo in accepted} <= stored, "every accepted photo is stored"

    kit.erase(subject_id)
    assert kit.versions(subject_id) == [], "nothing of the person is left, not even an unrecorded photo"


def test_a_killed_retention_mid_erasure_completes_it_once(kit: Any, wait_until: Until) -> None:
    subject_id = kit.open_subject()
    assert kit.versions(subject_id), "the person has stored data"
    erasure_id = kit.gateway.json("DELETE", f"/v1/subjects/{subject_id}", expect=(202,))["erasure_id"]
    kit.stack.kill_service("retention")
    kit.stack.start_service("retention")

    erasure = kit.erasure_done(erasure_id)
    assert erasure["key_destroyed_at"]
    assert erasure["completed_at"]
    assert kit.versions(subject_id) == [], "no object, no version"
    with pytest.raises(hvac.exceptions.InvalidPath):  # the key is destroyed
        kit.stack.infra.vault_client().secrets.transit.read_key(f"likeness-subject-{subject_id}")
    erased = [name for _, name, _ in kit.events(subject_id)]
    assert erased == ["subject.erased"], f"one announcement and no other event of the person: {erased}"
    assert kit.gateway.call("GET", f"/v1/subjects/{subject_id}", expect=(410,)).status_code == 410
