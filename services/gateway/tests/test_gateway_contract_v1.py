"""The v1 contract's cross-cutting parts: pagination, idempotency, request ids, rate limits, deadlines, SSE,
and the tenant-admin routes (retention policy, receipts, team looks). Backends are the conftest doubles;
NATS (idempotency records, progress events) is the real server of the `infra` fixture."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from gateway.caller import Caller
from gateway.idempotency import IdempotencyStore
from likeness.bus import Bus, event_nats_subject, kv_entries
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, events_pb2

BOUNDARY = "likeness-test-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
CONSENT = {"consent": {"purpose": "headshots", "policy_version": "2025-01"}}
JPEG = b"\xff\xd8\xff\xe0"


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def tenant() -> str:
    """A tenant of its own, so listings see only this test's subjects."""
    return f"t{uuid.uuid4().hex[:10]}"


async def pages(client: httpx.AsyncClient, url: str, items: str, headers: dict[str, str]) -> list[list[str]]:
    """The ids of every page of a listing, following next_cursor."""
    found: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(url, params=params, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {items, "next_cursor"}
        found.append([item["id"] for item in body[items]])
        cursor = body["next_cursor"]
        if cursor is None:
            return found


# ------------------------------------------------------------------------------------------ pagination


async def test_subjects_are_listed_newest_first_a_page_at_a_time(client, auth) -> None:
    owner = tenant()
    created = []
    for _ in range(5):
        response = await client.post("/v1/subjects", json=CONSENT, headers=auth(tenant=owner))
        created.append(response.json()["id"])
    listed = await pages(client, "/v1/subjects", "subjects", auth(tenant=owner))
    assert listed == [created[4:2:-1], created[2:0:-1], created[:1]]
    # Another tenant sees none of them.
    others = await client.get("/v1/subjects", headers=auth(tenant=tenant()))
    assert others.json() == {"subjects": [], "next_cursor": None}


async def test_an_end_user_token_cannot_list_subjects(client, auth, shared_world) -> None:
    response = await client.get("/v1/subjects", headers=auth(subject=shared_world.subject))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"
    assert shared_world.subject not in response.text


async def test_photos_trainings_and_renders_are_paged(client, auth, new_subject, multipart, fakes) -> None:
    subject = await new_subject()
    upload = await client.post(
        f"/v1/subjects/{subject}/photos",
        content=multipart([(f"{n}.jpg", JPEG + bytes([n])) for n in range(3)]),
        headers={**auth(), **MULTIPART},
    )
    photos = [photo["id"] for photo in upload.json()["photos"]]
    assert await pages(client, f"/v1/subjects/{subject}/photos", "photos", auth()) == [
        sorted(photos)[:2],
        sorted(photos)[2:],
    ]
    trainings = []
    for _ in range(3):
        response = await client.post(f"/v1/subjects/{subject}/trainings", json={}, headers=auth())
        trainings.append(response.json()["id"])
    listed = await pages(client, f"/v1/subjects/{subject}/trainings", "trainings", auth())
    assert listed == [trainings[:0:-1], trainings[:1]]
    fakes.trainer.trainings[("acme", trainings[0])].status = common_pb2.JOB_STATUS_SUCCEEDED
    renders = []
    for _ in range(3):
        body = {"training_id": trainings[0], "styles": ["corporate"]}
        renders.append(
            (await client.post(f"/v1/subjects/{subject}/renders", json=body, headers=auth())).json()
        )
    listed = await pages(client, f"/v1/subjects/{subject}/renders", "renders", auth())
    assert listed == [[renders[2]["id"], renders[1]["id"]], [renders[0]["id"]]]


@pytest.mark.parametrize(
    "cursor",
    [
        "not an id!",
        "e30",
        "pho_01jbz3m2a4c6e8g0j2k4m6p8rt",  # an id of another kind: a cursor of another list
        "trn_01jbz3p5b7d9f1h3k5m7q9s1vwx",
        "../../etc",
        "=" * 8,
    ],
)
async def test_an_invalid_cursor_is_a_bad_request(client, auth, shared_world, cursor) -> None:
    response = await client.get(
        f"/v1/subjects/{shared_world.subject}/trainings", params={"cursor": cursor}, headers=auth()
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("limit", [0, 101, -1])
async def test_limits_outside_1_to_100_are_refused(client, auth, limit) -> None:
    response = await client.get("/v1/subjects", params={"limit": limit}, headers=auth())
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


# ------------------------------------------------------------------------------------------ idempotency


async def test_a_retried_create_returns_the_first_answer_and_creates_nothing(client, auth, fakes) -> None:
    headers = {**auth(), **key()}
    before = len(fakes.retention.opened)
    first = await client.post("/v1/subjects", json=CONSENT, headers=headers)
    again = await client.post("/v1/subjects", json=CONSENT, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(fakes.retention.opened) == before + 1
    # Another key is another request.
    other = await client.post("/v1/subjects", json=CONSENT, headers={**auth(), **key()})
    assert other.json()["id"] != first.json()["id"]


async def test_the_same_key_with_another_body_is_refused(client, auth) -> None:
    headers = {**auth(), **key()}
    assert (await client.post("/v1/subjects", json=CONSENT, headers=headers)).status_code == 201
    changed = {"consent": {"purpose": "team_look", "policy_version": "2025-01"}}
    response = await client.post("/v1/subjects", json=changed, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    # Reordered keys are the same body.
    reordered = {"consent": {"policy_version": "2025-01", "purpose": "headshots"}}
    assert (await client.post("/v1/subjects", json=reordered, headers=headers)).status_code == 201


async def test_keys_are_per_tenant(client, auth) -> None:
    shared = key()
    first = await client.post("/v1/subjects", json=CONSENT, headers={**auth(), **shared})
    other = await client.post("/v1/subjects", json=CONSENT, headers={**auth(tenant=tenant()), **shared})
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]


async def test_a_key_in_flight_answers_409_with_retry_after(client, auth) -> None:
    store: IdempotencyStore = client.app.state.nats.idempotency
    headers = {**auth(), **key()}
    await store.claim(
        caller=Caller("acme", "tenant"),  # a token of acme's naming no subject and no client
        key=headers["Idempotency-Key"],
        method="POST",
        route="/v1/subjects",
        fingerprint=None,
        subject=None,
        lease_seconds=60,
    )
    response = await client.post("/v1/subjects", json=CONSENT, headers=headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_in_progress"
    assert response.headers["Retry-After"].isdigit()


async def test_an_abandoned_claim_is_taken_over_after_its_lease(client, auth) -> None:
    store: IdempotencyStore = client.app.state.nats.idempotency
    headers = {**auth(), **key()}
    await store.claim(
        caller=Caller("acme", "tenant"),  # a token of acme's naming no subject and no client
        key=headers["Idempotency-Key"],
        method="POST",
        route="/v1/subjects",
        fingerprint=None,
        subject=None,
        lease_seconds=-1,  # its replica died long ago
    )
    assert (await client.post("/v1/subjects", json=CONSENT, headers=headers)).status_code == 201


@pytest.mark.parametrize("bad", ["", "x" * 256, "tab\tkey", "ünïcode"])
async def test_malformed_keys_are_a_bad_request(client, auth, bad) -> None:
    headers: dict[str, Any] = {**auth(), "Idempotency-Key": bad.encode("utf-8")}
    response = await client.post("/v1/subjects", json=CONSENT, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"


async def test_a_request_that_failed_validation_is_not_remembered(client, auth) -> None:
    headers = {**auth(), **key()}
    assert (await client.post("/v1/subjects", json={}, headers=headers)).status_code == 422
    assert (await client.post("/v1/subjects", json=CONSENT, headers=headers)).status_code == 201


async def test_a_server_error_releases_the_key(client, auth, fakes, new_subject) -> None:
    subject = await new_subject()
    headers = {**auth(), **key()}
    fakes.retention.failures[subject] = (__import__("grpc").StatusCode.UNAVAILABLE, "vault_down")
    try:
        failed = await client.post(f"/v1/subjects/{subject}/trainings", json={}, headers=headers)
    finally:
        del fakes.retention.failures[subject]
    assert failed.status_code == 503
    assert failed.headers["Retry-After"].isdigit()
    # The retry runs (and here is refused for its own reason: no photos), it is not a replay of the 503.
    retried = await client.post(f"/v1/subjects/{subject}/trainings", json={}, headers=headers)
    assert retried.status_code == 409
    assert "Idempotent-Replayed" not in retried.headers


async def test_retried_uploads_store_nothing_twice(client, auth, new_subject, multipart, fakes) -> None:
    subject = await new_subject()
    headers = {**auth(), **MULTIPART, **key()}
    body = multipart([("me.jpg", JPEG + b"one"), ("me2.jpg", JPEG + b"two")])
    before = len(fakes.ingest.uploads)
    first = await client.post(f"/v1/subjects/{subject}/photos", content=body, headers=headers)
    again = await client.post(f"/v1/subjects/{subject}/photos", content=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert len(fakes.ingest.uploads) == before + 2
    other = multipart([("me.jpg", JPEG + b"one"), ("me2.jpg", JPEG + b"TWO")])
    reused = await client.post(f"/v1/subjects/{subject}/photos", content=other, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert len(fakes.ingest.uploads) == before + 2


async def test_a_retried_erasure_gets_the_same_202(client, auth, new_subject) -> None:
    subject = await new_subject()
    headers = {**auth(), **key()}
    first = await client.delete(f"/v1/subjects/{subject}", headers=headers)
    again = await client.delete(f"/v1/subjects/{subject}", headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    # DELETE is idempotent anyway: without the key, the same erasure (retention keeps one per subject).
    without_key = await client.delete(f"/v1/subjects/{subject}", headers=auth())
    assert without_key.status_code == 202
    assert without_key.json()["erasure_id"] == first.json()["erasure_id"]
    assert "Idempotent-Replayed" not in without_key.headers


async def test_stored_records_hold_nothing_in_clear_and_go_with_the_subject(client, auth, fakes) -> None:
    headers = {**auth(), **key()}
    created = await client.post(
        "/v1/subjects", json={**CONSENT, "external_ref": "anna-4711"}, headers=headers
    )
    subject = created.json()["id"]
    upload_headers = {**auth(), **MULTIPART, **key()}
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="anna-smith.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + JPEG
        + b"pixels\r\n"
        + f"--{BOUNDARY}--\r\n".encode()
    )
    assert (
        await client.post(f"/v1/subjects/{subject}/photos", content=body, headers=upload_headers)
    ).is_success
    store: IdempotencyStore = client.app.state.nats.idempotency
    # Listed from the stream's state (`kv_entries`): nats-py's `keys()` can end its replay early.
    entries = await kv_entries(store.kv, "")
    keys = [name for name, _, _ in entries]
    raw = b"".join(name.encode() + value for name, value, _ in entries)
    for secret in (headers["Idempotency-Key"], "anna", subject.encode().decode(), "headshots"):
        assert secret.encode() not in raw.replace(f"s.acme.{subject}.".encode(), b"")
    assert any(name.startswith(f"s.acme.{subject}.") for name in keys)

    bus = client.app.state.nats.bus
    assert isinstance(bus, Bus)
    event = events_pb2.SubjectErased(
        tenant="acme", subject_id=subject, erasure_id="era_x", at=now_timestamp()
    )
    await bus.publish(event_nats_subject("acme", subject, "subject.erased"), event)
    for _ in range(100):
        remaining = [name for name, _, _ in await kv_entries(store.kv, "") if subject in name]
        if not remaining:
            break
        await asyncio.sleep(0.05)
    assert remaining == []
    # The subject's create is no longer replayed (its record went with the subject).
    retried = await client.post(
        "/v1/subjects", json={**CONSENT, "external_ref": "anna-4711"}, headers=headers
    )
    assert retried.json()["id"] != subject


# ------------------------------------------------------------------------------------------ request ids


async def test_a_valid_request_id_is_echoed_and_a_bad_one_replaced(client, auth) -> None:
    mine = "req-0123456789abcdef"
    response = await client.get("/v1/subjects/sub_nope", headers={**auth(), "X-Request-Id": mine})
    assert response.headers["X-Request-Id"] == mine
    assert response.json()["error"]["request_id"] == mine
    replaced = await client.get("/healthz", headers={"X-Request-Id": "bad id\r\nwith stuff"})
    assert replaced.headers["X-Request-Id"] != "bad id\r\nwith stuff"
    assert len(replaced.headers["X-Request-Id"]) == 32


# ------------------------------------------------------------------------------------------ abuse limits


async def test_a_tenant_beyond_its_rate_gets_429_with_retry_after(make_client, auth) -> None:
    async with make_client(
        rate_limit_per_second=0.01, rate_limit_burst=3, upload_rate_limit_per_second=0.01
    ) as client:
        # A tenant of its own: the session's other apps share the rate-sync subject, and their reports of
        # the default tenant's requests would charge this app's small bucket too.
        caller = auth(tenant=tenant())
        statuses = [(await client.get("/v1/styles", headers=caller)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = await client.get("/v1/styles", headers=caller)
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        # Other tenants have buckets of their own.
        assert (await client.get("/v1/styles", headers=auth(tenant=tenant()))).status_code == 200


async def test_uploads_draw_from_their_own_stricter_bucket(make_client, auth, multipart) -> None:
    async with make_client(upload_rate_limit_per_second=0.01, upload_rate_limit_burst=1) as client:
        caller = auth(tenant=tenant())  # a tenant of its own (see the test above)
        subject = (await client.post("/v1/subjects", json=CONSENT, headers=caller)).json()["id"]
        url = f"/v1/subjects/{subject}/photos"
        body = multipart([("a.jpg", JPEG + b"a")])
        assert (await client.post(url, content=body, headers={**caller, **MULTIPART})).status_code == 200
        second = await client.post(url, content=body, headers={**caller, **MULTIPART})
        assert second.status_code == 429
        assert second.headers["Retry-After"].isdigit()
        assert (await client.get(url, headers=caller)).status_code == 200


async def test_a_slow_request_times_out_with_504(make_client, auth, fakes) -> None:
    async with make_client(request_timeout_seconds=0.3) as client:
        subject = (await client.post("/v1/subjects", json=CONSENT, headers=auth())).json()["id"]
        fakes.retention.delays[subject] = 2.0
        try:
            response = await client.get(f"/v1/subjects/{subject}", headers=auth())
        finally:
            del fakes.retention.delays[subject]
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
    assert response.json()["error"]["request_id"] == response.headers["X-Request-Id"]


# ------------------------------------------------------------------------------------------ SSE


def parse_events(text: str) -> list[tuple[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_training_events_stream_the_state_until_it_ends(make_client, auth, world, fakes) -> None:
    record = fakes.trainer.trainings[("acme", world.training)]

    async def advance(bus: Bus) -> None:
        await asyncio.sleep(0.3)
        record.status = common_pb2.JOB_STATUS_RUNNING
        record.progress.step = 5
        progress = events_pb2.TrainingProgress(
            tenant="acme", subject_id=world.subject, training_id=world.training, step=5, total_steps=10
        )
        await bus.publish(event_nats_subject("acme", world.subject, "training.progress"), progress)
        await asyncio.sleep(0.3)
        record.status = common_pb2.JOB_STATUS_SUCCEEDED
        record.progress.step = 10

    async with make_client(sse_poll_seconds=0.1) as client:
        changer = asyncio.create_task(advance(client.app.state.nats.bus))
        response = await client.get(f"/v1/trainings/{world.training}/events", headers=auth())
        await changer
        expected_final = (await client.get(f"/v1/trainings/{world.training}", headers=auth())).json()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_events(response.text)
    assert events[0][0] == "progress"
    assert events[0][1]["status"] == "queued"
    assert ("progress", 5) in [(name, data["progress"]["step"]) for name, data in events]
    assert events[-1] == ("end", expected_final)
    assert [name for name, _ in events].count("end") == 1


async def test_a_finished_render_streams_only_its_end(client, auth, shared_world) -> None:
    response = await client.get(f"/v1/renders/{shared_world.render}/events", headers=auth())
    current = (await client.get(f"/v1/renders/{shared_world.render}", headers=auth())).json()
    assert parse_events(response.text) == [("end", current)]


async def test_event_streams_are_guarded_like_their_get(client, auth, shared_world) -> None:
    url = f"/v1/trainings/{shared_world.training}/events"
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers=auth(scopes=["renders:read"]))).status_code == 403
    assert (await client.get(url, headers=auth(tenant="globex"))).status_code == 404
    assert (await client.get(url, headers=auth(subject=shared_world.other_subject))).status_code == 404


async def test_a_stream_whose_subject_is_erased_ends_with_an_error_event(
    make_client, auth, world, fakes
) -> None:
    async def erase() -> None:
        await asyncio.sleep(0.3)
        fakes.retention.subjects[("acme", world.subject)].status = 2  # ERASING

    async with make_client(sse_poll_seconds=0.1) as client:
        eraser = asyncio.create_task(erase())
        response = await client.get(f"/v1/trainings/{world.training}/events", headers=auth())
        await eraser
    events = parse_events(response.text)
    assert events[-1] == ("error", {"error": {**events[-1][1]["error"], "code": "subject_erased"}})


# ------------------------------------------------------------------------------------------ tenant admin


async def test_the_retention_policy_can_be_read_and_set(client, auth) -> None:
    owner = tenant()
    before = await client.get("/v1/retention-policy", headers=auth(tenant=owner))
    assert before.status_code == 200
    assert before.json()["tenant_specific"] is False
    schedule = {"photos_days": 7, "photos_deleted_after_training": True, "models_days": 30}
    after = await client.put("/v1/retention-policy", json=schedule, headers=auth(tenant=owner))
    assert after.status_code == 200, after.text
    assert after.json()["tenant_specific"] is True
    assert after.json()["schedule"]["photos_days"] == 7
    refused = await client.put("/v1/retention-policy", json={"photos_days": 2000}, headers=auth(tenant=owner))
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_schedule"
    end_user = await client.get(
        "/v1/retention-policy", headers=auth(subject="sub_01jbz3k7q8m2x4v6n9p0r5t7wy")
    )
    assert end_user.status_code == 403


async def test_receipts_and_their_public_keys(client, auth, shared_world) -> None:
    receipt = await client.get(f"/v1/erasures/{shared_world.erasure}/receipt", headers=auth())
    assert receipt.status_code == 200
    assert receipt.json()["receipt"]["erasure_id"] == shared_world.erasure
    assert (
        await client.get(f"/v1/erasures/{shared_world.erasure}/receipt", headers=auth(tenant="globex"))
    ).status_code == 404
    keys = await client.get("/v1/receipt-keys")  # public: anyone may verify a receipt
    assert keys.status_code == 200
    assert keys.json()["keys"][0]["kty"] == "OKP"


async def test_team_looks_can_be_kept_and_used(client, auth, world, fakes) -> None:
    look = {
        "name": "Sales",
        "style": "corporate",
        "background": "light_gray",
        "seed_policy": "fixed",
        "seed": 9,
    }
    put = await client.put("/v1/team-looks/sales", json=look, headers=auth())
    assert put.status_code == 200, put.text
    assert put.json()["seed_policy"] == "fixed"
    assert (await client.get("/v1/team-looks/sales", headers=auth())).json() == put.json()
    assert (await client.get("/v1/team-looks/sales", headers=auth(tenant="globex"))).status_code == 404
    listed = await client.get("/v1/team-looks", headers=auth())
    assert [item["id"] for item in listed.json()["looks"]] == ["sales"]
    bad = await client.put("/v1/team-looks/sales", json={**look, "style": "nope"}, headers=auth())
    assert bad.status_code == 400
    end_user = await client.put("/v1/team-looks/sales", json=look, headers=auth(subject=world.subject))
    assert end_user.status_code == 403
    body = {"training_id": world.done_training, "team_look_id": "sales"}
    render = await client.post(f"/v1/subjects/{world.subject}/renders", json=body, headers=auth())
    assert render.status_code == 202, render.text
    assert fakes.renderer.submitted[-1].team_look_id == "sales"
    assert (await client.delete("/v1/team-looks/sales", headers=auth())).status_code == 204
    assert (await client.delete("/v1/team-looks/sales", headers=auth())).status_code == 404


# ------------------------------------------------------------------------------------------ hot path


async def test_reads_trust_a_subject_seen_active_briefly_and_erasure_clears_it(
    make_client, auth, fakes
) -> None:
    async with make_client(subject_status_cache_seconds=5) as client:
        subject = (await client.post("/v1/subjects", json=CONSENT, headers=auth())).json()["id"]
        body = multipart_one()
        await client.post(f"/v1/subjects/{subject}/photos", content=body, headers={**auth(), **MULTIPART})
        training = (await client.post(f"/v1/subjects/{subject}/trainings", json={}, headers=auth())).json()[
            "id"
        ]
        assert (await client.get(f"/v1/trainings/{training}", headers=auth())).status_code == 200
        fakes.retention.failures[subject] = (__import__("grpc").StatusCode.UNAVAILABLE, "down")
        try:
            # Retention is not asked again within the window...
            assert (await client.get(f"/v1/trainings/{training}", headers=auth())).status_code == 200
        finally:
            del fakes.retention.failures[subject]
        # ...but an erasure through this gateway is seen at once,
        assert (await client.delete(f"/v1/subjects/{subject}", headers=auth())).status_code == 202
        assert (await client.get(f"/v1/trainings/{training}", headers=auth())).status_code == 410
        # and one announced by any replica (subject.erased on NATS) too.
        other = (await client.post("/v1/subjects", json=CONSENT, headers=auth())).json()["id"]
        await client.post(f"/v1/subjects/{other}/photos", content=body, headers={**auth(), **MULTIPART})
        trn = (await client.post(f"/v1/subjects/{other}/trainings", json={}, headers=auth())).json()["id"]
        assert (await client.get(f"/v1/trainings/{trn}", headers=auth())).status_code == 200
        fakes.retention.subjects[("acme", other)].status = 3  # ERASED, behind the gateway's back
        event = events_pb2.SubjectErased(
            tenant="acme", subject_id=other, erasure_id="era_y", at=now_timestamp()
        )
        await client.app.state.nats.bus.publish(event_nats_subject("acme", other, "subject.erased"), event)
        for _ in range(100):
            if (await client.get(f"/v1/trainings/{trn}", headers=auth())).status_code == 410:
                break
            await asyncio.sleep(0.05)
        assert (await client.get(f"/v1/trainings/{trn}", headers=auth())).status_code == 410


def multipart_one() -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + JPEG + b"x\r\n" + f"--{BOUNDARY}--\r\n".encode()
