"""Erasure in the middle of a training and of a render, through the gateway, with the real workers: nothing
of the person is left anywhere (object versions, KV records, event history, their key), the workers move
on, and the signed receipt verifies against the published key."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.errors import BucketNotFoundError, KeyNotFoundError

from likeness import receipts
from likeness.bus import EVENTS_STREAM, subject_events_filter
from likeness.config import CommonSettings
from likeness.hashing import keyed_hmac
from likeness.object_names import subject_prefix
from likeness.store import ObjectStore
from likeness.v1 import renderer_pb2, retention_pb2, trainer_pb2
from likeness.vault_transit import SubjectKeys
from likeness_cli.main import main
from likeness_dev.journey import GatewayClient
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_dev.tokens import DEV_TENANT

pytestmark = pytest.mark.slow
TERMINAL = {"succeeded", "failed", "cancelled"}


def _settings(stack: DevStack) -> CommonSettings:
    env = stack.infra.endpoints.as_env()
    return CommonSettings(**{k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()})


def _poll(
    gateway: GatewayClient, path: str, done: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record = gateway.json("GET", path)
        if done(record):
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never got there: {record}")
        time.sleep(0.2)


def _open_with_photos(gateway: GatewayClient) -> str:
    subject = gateway.json(
        "POST",
        "/v1/subjects",
        expect=(201,),
        json={"consent": {"purpose": "headshots", "policy_version": "1"}},
    )
    files = [("file", (name, data, "application/octet-stream")) for name, data in sample_photos(2)]
    photos = gateway.json("POST", f"/v1/subjects/{subject['id']}/photos", files=files)["photos"]
    assert all(p["status"] == "accepted" for p in photos), photos
    return str(subject["id"])


def _erase(gateway: GatewayClient, subject_id: str) -> str:
    erasure_id = str(gateway.json("DELETE", f"/v1/subjects/{subject_id}", expect=(202,))["erasure_id"])
    _poll(gateway, f"/v1/erasures/{erasure_id}", lambda r: r["status"] == "completed", 60)
    return erasure_id


async def _kv_leftovers(nc: Any, subject_id: str, subject_hmac: str) -> list[str]:
    js = nc.jetstream()
    found = []
    owners: dict[str, type[Any] | None] = {
        "photos": None,
        "trainings": trainer_pb2.Training,
        "renders": renderer_pb2.Render,
        "deadlines": None,
    }
    for bucket, cls in owners.items():
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            continue
        watcher = await kv.watch(f"{DEV_TENANT}.>", ignore_deletes=True)
        async for entry in watcher:
            if entry is None:
                break
            if cls is None:
                hit = f".{subject_id}." in f".{entry.key}."
            else:
                record = cls()
                record.ParseFromString(entry.value or b"")
                hit = record.subject_id == subject_id
            if hit:
                found.append(f"KV {bucket}/{entry.key}")
        await watcher.stop()
    subjects = await js.key_value("subjects")
    with contextlib.suppress(KeyNotFoundError):
        await subjects.get(f"{DEV_TENANT}.{subject_id}")
        found.append("the subject record is still kept under the subject id")
    # The tombstone is kept under the subject's keyed HMAC, and holds no subject id.
    entry = await subjects.get(f"{DEV_TENANT}.erased.{subject_hmac}")
    tombstone = retention_pb2.Subject()
    tombstone.ParseFromString(entry.value or b"")
    if tombstone.status != retention_pb2.SUBJECT_STATUS_ERASED or tombstone.HasField("consent"):
        found.append("the subject record is more than a tombstone")
    if tombstone.id:
        found.append("the tombstone names the subject")
    return found


async def _event_leftovers(nc: Any, subject_id: str) -> list[str]:
    info = await nc.jetstream().stream_info(
        EVENTS_STREAM, subjects_filter=subject_events_filter(DEV_TENANT, subject_id)
    )
    # The erasure notice may still be there: it goes once every service has acknowledged it.
    return [f"event {s}" for s in (info.state.subjects or {}) if not s.endswith(".subject.erased")]


def _leftovers(stack: DevStack, subject_id: str) -> list[str]:
    settings = _settings(stack)
    store = ObjectStore.from_settings(settings)
    found = [
        f"S3 {v.key} ({v.version_id})" for v in store.list_versions(subject_prefix(DEV_TENANT, subject_id))
    ]
    if SubjectKeys.from_settings(settings).exists(subject_id):
        found.append("the subject's Vault key")

    async def on_the_bus() -> list[str]:
        nc = await nats.connect(settings.nats_url)
        try:
            subject_hmac = keyed_hmac(stack.hmac_secret, "subject", DEV_TENANT, subject_id)
            return await _kv_leftovers(nc, subject_id, subject_hmac) + await _event_leftovers(nc, subject_id)
        finally:
            await nc.close()

    return found + asyncio.run(on_the_bus())


def _assert_nothing_left(stack: DevStack, subject_id: str, timeout: float = 60.0) -> None:
    """Polls: workers cancel between steps and a write in flight when the key went is rescanned away."""
    deadline = time.monotonic() + timeout
    while (found := _leftovers(stack, subject_id)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert found == [], f"left behind after erasure: {found}"


def _receipt(stack: DevStack, erasure_id: str) -> bytes:
    async def read() -> bytes:
        nc = await nats.connect(_settings(stack).nats_url)
        try:
            entry = await (await nc.jetstream().key_value("receipts")).get(f"{DEV_TENANT}.{erasure_id}")
            return bytes(entry.value or b"")
        finally:
            await nc.close()

    return asyncio.run(read())


def _verified(raw: bytes, stack: DevStack) -> dict[str, Any]:
    # The dev stack signs with a key derived from its HMAC secret (production configures one).
    public = receipts.development_key(stack.hmac_secret).public_key()
    return receipts.verify_receipt_text(raw, {receipts.key_id(public): public})


def test_erasure_during_a_training_leaves_nothing_behind(
    stack: DevStack, gateway: GatewayClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    subject_id = _open_with_photos(gateway)
    training_id = gateway.json(
        "POST", f"/v1/subjects/{subject_id}/trainings", expect=(202,), json={"steps": 200}
    )["id"]
    during = _poll(
        gateway,
        f"/v1/trainings/{training_id}",
        lambda r: r["status"] in TERMINAL or (r["progress"] or {}).get("step", 0) > 0,
        180,
    )
    assert during["status"] == "running", f"the training must still be running when erased: {during}"

    erasure_id = _erase(gateway, subject_id)
    _assert_nothing_left(stack, subject_id)
    assert gateway.call("GET", f"/v1/trainings/{training_id}", expect=(404, 410)).status_code in (404, 410)
    raw = _receipt(stack, erasure_id)
    facts = _verified(raw, stack)
    assert facts["objects_deleted"] >= 4, "two crops and two face templates at least"
    assert subject_id not in facts["subject_hmac"]

    # `likeness receipt verify FILE` against the stack's published key; then a tampered copy.
    receipt = tmp_path / "receipt.json"
    receipt.write_bytes(raw)
    assert main(["receipt", "verify", str(receipt), "--project-dir", str(stack.project_dir)]) == 0
    assert erasure_id in capsys.readouterr().out
    receipt.write_bytes(raw.replace(b'"objects_deleted":', b'"objects_deleted":1'))
    assert main(["receipt", "verify", str(receipt), "--project-dir", str(stack.project_dir)]) == 1


def _metric(stack: DevStack, service: str, name: str) -> float | None:
    import httpx

    text = httpx.get(f"{stack.services[service].metrics_url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_erasure_during_a_render_leaves_nothing_behind(stack: DevStack, gateway: GatewayClient) -> None:
    subject_id = _open_with_photos(gateway)
    training_id = gateway.json("POST", f"/v1/subjects/{subject_id}/trainings", expect=(202,), json={})["id"]
    trained = _poll(gateway, f"/v1/trainings/{training_id}", lambda r: r["status"] in TERMINAL, 300)
    assert trained["status"] == "succeeded", "the trainer worker moved on from an erased job"

    styles = [style["id"] for style in gateway.json("GET", "/v1/styles")["styles"]][:4]
    cached_before = _metric(stack, "renderer-worker", "likeness_renderer_subject_cache_entries")
    render_id = gateway.json(
        "POST",
        f"/v1/subjects/{subject_id}/renders",
        expect=(202,),
        json={"training_id": training_id, "styles": styles, "images_per_style": 8, "seed": 3},
    )["id"]
    during = _poll(
        gateway,
        f"/v1/renders/{render_id}",
        lambda r: r["status"] in TERMINAL or len(r["images"]) > 0,
        180,
    )
    assert during["status"] == "running", f"the render must still be running when erased: {during}"

    erasure_id = _erase(gateway, subject_id)
    _assert_nothing_left(stack, subject_id)
    if cached_before is not None:  # the worker keeps a cache of decrypted LoRAs: this one must be gone
        cached_after = _metric(stack, "renderer-worker", "likeness_renderer_subject_cache_entries")
        assert cached_after is not None
        assert cached_after <= cached_before
    facts = _verified(_receipt(stack, erasure_id), stack)
    assert facts["objects_deleted"] >= 5, "photos, templates and the LoRA at least"
