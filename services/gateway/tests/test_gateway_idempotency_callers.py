"""Idempotency records are the caller's own and are claimed only after authorization: another caller of the
tenant sending the same Idempotency-Key gets no replay (of a 404 either), and a refused request claims
nothing. Backends are the conftest doubles; the records live in the real NATS KV bucket of the app."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jwt

from gateway.idempotency import IdempotencyStore
from likeness.bus import kv_keys

SECRET = "gateway-tests-secret-0123456789abcdef"  # the one conftest configures
CONSENT = {"consent": {"purpose": "headshots", "policy_version": "2025-01"}}
MULTIPART = {"Content-Type": "multipart/form-data; boundary=likeness-test-boundary"}
UPLOAD = (
    b'--likeness-test-boundary\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0pixels\r\n--likeness-test-boundary--\r\n"
)
REPLAYED = "Idempotent-Replayed"


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def as_client(headers: dict[str, str], client_id: str) -> dict[str, str]:
    """The same token, issued to an OAuth client (`client_id`): another caller of the same tenant."""
    token = headers["Authorization"].removeprefix("Bearer ")
    claims: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_aud": False})
    claims["client_id"] = client_id
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


async def records(client: httpx.AsyncClient) -> set[str]:
    store: IdempotencyStore = client.app.state.nats.idempotency  # type: ignore[attr-defined]
    return set(await kv_keys(store.kv, "r."))


async def test_another_caller_with_the_same_key_gets_its_own_answer(client, auth) -> None:
    shared = key()
    first = await client.post("/v1/subjects", json=CONSENT, headers={**as_client(auth(), "crm"), **shared})
    again = await client.post("/v1/subjects", json=CONSENT, headers={**as_client(auth(), "crm"), **shared})
    assert first.status_code == again.status_code == 201
    assert again.headers.get(REPLAYED) == "true", "the same caller gets its answer again"
    other = await client.post(
        "/v1/subjects", json=CONSENT, headers={**as_client(auth(), "billing"), **shared}
    )
    assert other.status_code == 201
    assert REPLAYED not in other.headers
    assert other.json()["id"] != first.json()["id"], "another caller's request ran on its own"


async def test_a_stored_404_is_replayed_to_its_caller_only(client, auth) -> None:
    shared = key()
    missing = "/v1/trainings/trn_01jbz3p5b7d9f1h3k5m7q9s1vw/cancel"
    first = await client.post(missing, headers={**as_client(auth(), "crm"), **shared})
    assert first.status_code == 404
    assert (await client.post(missing, headers={**as_client(auth(), "crm"), **shared})).headers.get(
        REPLAYED
    ) == "true"
    other = await client.post(missing, headers={**as_client(auth(), "billing"), **shared})
    assert other.status_code == 404
    assert REPLAYED not in other.headers


async def test_another_end_users_404_is_not_replayed_to_the_rightful_caller(
    client, auth, new_subject, fakes
) -> None:
    """Before: the end user of another subject got 404 with the key, and the subject's own end user, retrying
    with that key (a shared client library, a guessed key), got the stored 404 instead of its training."""
    subject, stranger = await new_subject(), await new_subject()
    upload = await client.post(
        f"/v1/subjects/{subject}/photos", content=UPLOAD, headers={**MULTIPART, **auth()}
    )
    assert upload.status_code == 200, upload.text
    shared = key()
    url = f"/v1/subjects/{subject}/trainings"
    refused = await client.post(url, json={}, headers={**auth(subject=stranger), **shared})
    assert refused.status_code == 404
    rightful = await client.post(url, json={}, headers={**auth(subject=subject), **shared})
    assert rightful.status_code == 202, rightful.text
    assert REPLAYED not in rightful.headers


async def test_a_refused_request_claims_nothing(client, auth, new_subject) -> None:
    subject, stranger = await new_subject(), await new_subject()
    shared = key()
    url = f"/v1/subjects/{subject}/trainings"
    before = await records(client)
    refusals = [
        ({"Authorization": "Bearer forged"}, 401),
        (auth(ttl_seconds=-60), 401),
        (auth(scopes=["trainings:read", "tenant:all"]), 403),  # no trainings:write
        (auth(scopes=["trainings:write"]), 403),  # no tenant:all, no sub
        (auth(subject=stranger), 404),  # another subject's end user
    ]
    for headers, status in refusals:
        response = await client.post(url, json={}, headers={**headers, **shared})
        assert response.status_code == status, (headers, response.text)
    assert await records(client) == before, "no record was claimed for a refused request"
    # The rightful caller's request runs (here refused for its own reason: no photos) and is recorded.
    allowed = await client.post(url, json={}, headers={**auth(), **shared})
    assert allowed.status_code == 409
    assert REPLAYED not in allowed.headers
    assert len(await records(client) - before) == 1
