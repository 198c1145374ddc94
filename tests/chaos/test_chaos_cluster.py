"""The bigger stack's faults: a JetStream cluster loses its stream leader, and OpenBao really restarts.

On `cluster_stack`: NATS as three servers in one JetStream cluster, every stream and KV bucket at three
replicas (`likeness bootstrap` with `LIKENESS_STREAM_REPLICAS=3`), every process given all three URLs; and
OpenBao on persistent (raft) storage that the stack initialised once and unseals after every start.

- The leader of the training queue's stream is SIGKILLed while a training runs: another server takes the
  lead (meanwhile a read may answer 503 `unavailable` with `Retry-After`, never 500), the training and the
  render after it each complete once, no event is lost, and the killed server, started again, catches up.
- OpenBao is SIGKILLed while a training runs (not frozen, as the dev server must be): meanwhile a photo
  is refused with 503 and stored in no form; the stack starts and unseals it again; every subject key is
  still there (the training completes, the images decrypt, a new upload is accepted) and the services'
  Vault tokens still hold.
- Last, the leak scan over this stack: no plaintext in the S3 data, the three NATS stores or the temp dir,
  no identifier or secret (the unseal key included) in any log or metric label.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from likeness.bus import EVENTS_STREAM, RENDER_STREAM, TRAIN_STREAM
from likeness.provisioning import TRAININGS_BUCKET
from likeness_dev.infra import VAULT
from likeness_dev.leaks import photo_secrets, scan_plaintext, scan_stack
from likeness_dev.samples import sample_photos

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_ci, pytest.mark.slow]

Until = Callable[..., Any]
REPLICAS = 3


def _names(kit: Any, subject_id: str) -> list[str]:
    return [name for _, name, _ in kit.events(subject_id) if name != "training.progress"]


def _running(kit: Any, training_id: str) -> bool:
    return bool(kit.gateway.json("GET", f"/v1/trainings/{training_id}")["status"] == "running")


def _render_and_download(
    kit: Any, subject_id: str, training_id: str, *, through_failover: bool = False
) -> None:
    render_id = kit.render(subject_id, training_id, ["linkedin"], 2, through_failover=through_failover)
    render = kit.ended(f"/v1/renders/{render_id}", through_failover=through_failover)
    assert render["status"] == "succeeded", render
    assert len(kit.download(render)) == 2


def test_every_stream_and_bucket_has_three_replicas(cluster_kit: Any) -> None:
    async def replicas(bus: Any) -> dict[str, int]:
        return {
            str(info.config.name): int(info.config.num_replicas or 1) for info in await bus.js.streams_info()
        }

    found = cluster_kit.with_bus(replicas)
    assert {TRAIN_STREAM, RENDER_STREAM, EVENTS_STREAM, f"KV_{TRAININGS_BUCKET}"} <= set(found), found
    assert set(found.values()) == {REPLICAS}, found


def test_the_stream_leader_killed_mid_journey_loses_no_job_and_no_event(
    cluster_kit: Any, wait_until: Until
) -> None:
    kit = cluster_kit
    infra = kit.stack.infra
    subject_id = kit.open_subject()
    before = _names(kit, subject_id)
    training_id = kit.train(subject_id, 16)
    wait_until(lambda: _running(kit, training_id), 120, "the training's start")

    leader = kit.stream_leader(TRAIN_STREAM)
    assert leader in infra.nats_nodes, leader
    infra.kill_server(leader)
    # Another server takes the lead of the queue (its raft group has two of three left).
    wait_until(lambda: kit.stream_leader(TRAIN_STREAM) not in ("", leader), 60, "a new leader")

    # While the buckets the reads need elect their leaders, a read may answer 503 (never 500): waited out.
    training = kit.ended(f"/v1/trainings/{training_id}", through_failover=True)
    assert training["status"] == "succeeded", training
    # The render's submit may meet a bucket still electing its leader too: retried as a client would.
    _render_and_download(kit, subject_id, training_id, through_failover=True)

    infra.start_server(leader)
    for stream in (TRAIN_STREAM, RENDER_STREAM, EVENTS_STREAM, f"KV_{TRAININGS_BUCKET}"):
        wait_until(lambda stream=stream: kit.stream_whole(stream, REPLICAS), 60, f"{stream} caught up")
    wait_until(lambda: kit.queue_idle(TRAIN_STREAM), 60, "the trainer's ack")
    wait_until(lambda: kit.queue_idle(RENDER_STREAM), 60, "the renderer's ack")

    names = _names(kit, subject_id)
    assert names[: len(before)] == before, "the events from before the kill are all there"
    assert names.count("training.completed") == 1, names
    assert names.count("render.completed") == 1, names
    assert [found.key.rsplit("/", 1)[1] for found in kit.versions(subject_id, f"models/{training_id}/")] == [
        "faces",
        "lora",
    ], "one LoRA and its face templates, one version each"
    kit.erase(subject_id)


def test_vault_really_restarted_mid_journey_is_unsealed_and_keeps_every_key(
    cluster_kit: Any, wait_until: Until
) -> None:
    kit = cluster_kit
    infra = kit.stack.infra
    subject_id = kit.open_subject()
    training_id = kit.train(subject_id, 16)
    wait_until(lambda: _running(kit, training_id), 120, "the training's start")
    photo = sample_photos(3)[2:]
    kit.ledger.add_photos(photo)
    files = [("file", (name, data, "application/octet-stream")) for name, data in photo]
    pid_before = infra.vault.pid

    infra.kill_server(VAULT)
    try:
        refused = kit.gateway.http.post(f"/v1/subjects/{subject_id}/photos", files=files)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "unavailable"
        endpoints = infra.endpoints
        scan = scan_plaintext(
            [endpoints.s3_data_dir, endpoints.nats_store_dir, kit.stack.tmp_dir], photo_secrets(photo)
        )
        assert scan.findings == [], [str(finding) for finding in scan.findings]
    finally:
        infra.start_server(VAULT)  # a new process, sealed until the stack unseals it

    assert infra.vault.pid != pid_before
    health = httpx.get(f"{infra.endpoints.vault_addr}/v1/sys/health", timeout=5.0).json()
    assert (health["initialized"], health["sealed"]) == (True, False), health
    training = kit.ended(f"/v1/trainings/{training_id}")
    assert training["status"] == "succeeded", training
    _render_and_download(kit, subject_id, training_id)  # the subject's key outlived the restart
    assert [verdict["status"] for verdict in kit.upload(subject_id, photo)] == ["accepted"]
    names = _names(kit, subject_id)
    assert names.count("training.completed") == 1, names
    assert names.count("render.completed") == 1, names
    erasure = kit.erase(subject_id)
    assert erasure["key_destroyed_at"], erasure


def test_the_cluster_stack_leaked_nothing(cluster_kit: Any) -> None:
    ledger = cluster_kit.ledger
    secrets = photo_secrets(ledger.photos.items())
    secrets += [(f"render {image_id}", data) for image_id, data in ledger.images.items()]
    findings, plaintext = scan_stack(cluster_kit.stack, secrets, ledger.needles)
    assert plaintext.bytes_scanned > 0, "the scan read nothing: wrong data directories?"
    assert cluster_kit.stack.infra.vault_unseal_key, "a persistent OpenBao has an unseal key to look for"
    assert findings == [], "\n".join(str(finding) for finding in findings)
