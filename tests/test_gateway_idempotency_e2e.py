"""Idempotency-Key on the real stack: retried creates answer the first response and create nothing more,
records live in the gateway's NATS KV bucket without anything personal in clear, and go on erasure."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack

BUCKET_DIR = "KV_gateway_idempotency"


@pytest.fixture(scope="module")
def tenant_client(stack: DevStack) -> Iterator[httpx.Client]:
    tenant = f"idem-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {stack.mint_token(tenant=tenant)}"}
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=60) as client:
        yield client


def test_a_retried_subject_create_opens_one_subject(tenant_client: httpx.Client) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"external_ref": "person-7", "consent": {"purpose": "headshots", "policy_version": "2026-01"}}
    answers = [tenant_client.post("/v1/subjects", json=body, headers=key) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [201, 201, 201]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert [answer.headers.get("Idempotent-Replayed") for answer in answers] == [None, "true", "true"]
    listed = tenant_client.get("/v1/subjects").json()["subjects"]
    assert [subject["id"] for subject in listed] == [answers[0].json()["id"]]
    changed = {**body, "external_ref": "person-8"}
    reused = tenant_client.post("/v1/subjects", json=changed, headers=key)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


def test_retried_uploads_and_trainings_create_nothing_twice(tenant_client: httpx.Client) -> None:
    consent = {"consent": {"purpose": "headshots", "policy_version": "2026-01"}}
    subject = tenant_client.post("/v1/subjects", json=consent).json()["id"]
    files = [("file", (name, data, "image/jpeg")) for name, data in sample_photos(2)]
    upload_key = {"Idempotency-Key": str(uuid.uuid4())}
    first = tenant_client.post(f"/v1/subjects/{subject}/photos", files=files, headers=upload_key)
    again = tenant_client.post(f"/v1/subjects/{subject}/photos", files=files, headers=upload_key)
    assert first.status_code == again.status_code == 200, first.text
    assert again.json() == first.json()
    assert len(tenant_client.get(f"/v1/subjects/{subject}/photos").json()["photos"]) == 2

    training_key = {"Idempotency-Key": str(uuid.uuid4())}
    trainings = [
        tenant_client.post(f"/v1/subjects/{subject}/trainings", json={}, headers=training_key)
        for _ in range(2)
    ]
    assert [t.status_code for t in trainings] == [202, 202]
    assert trainings[0].json() == trainings[1].json()
    listed = tenant_client.get(f"/v1/subjects/{subject}/trainings").json()["trainings"]
    assert [training["id"] for training in listed] == [trainings[0].json()["id"]]
    tenant_client.post(f"/v1/trainings/{listed[0]['id']}/cancel")


def test_records_hold_nothing_in_clear_and_go_with_the_subject(stack: DevStack, tenant_client) -> None:
    key = str(uuid.uuid4())
    body = {"external_ref": "ref-in-clear-4711", "consent": {"purpose": "headshots", "policy_version": "1"}}
    subject = tenant_client.post("/v1/subjects", json=body, headers={"Idempotency-Key": key}).json()["id"]
    data_dirs = list(stack.infra.nats_store_dir.rglob(BUCKET_DIR))
    assert data_dirs, "the gateway's KV bucket lives in NATS"
    # The stored values are sealed: neither the key, the reference nor the purpose appears in the files.
    blob = b"".join(path.read_bytes() for d in data_dirs for path in d.rglob("*") if path.is_file())
    for secret in (key, "ref-in-clear-4711", "headshots"):
        assert secret.encode() not in blob

    assert tenant_client.delete(f"/v1/subjects/{subject}").status_code == 202
    deadline = time.monotonic() + 60
    while True:
        retried = tenant_client.post("/v1/subjects", json=body, headers={"Idempotency-Key": key})
        if retried.status_code == 201 and retried.json()["id"] != subject:
            break  # the record went with the subject: the key runs afresh
        assert time.monotonic() < deadline, retried.text
        time.sleep(0.5)
