"""Limits before work (`gateway.edge`): body limits before authentication and before reading, no body read
without a token, the concurrency limit, rate buckets per caller under the tenant's total, caps on event
streams and exports per caller, and the upload deadline. Backends are the conftest doubles; NATS is real.

Bodies are async generators that count what was pulled from them: httpx's ASGI transport pulls the next
chunk only when the app asks for one, so "nothing was pulled" is "the gateway read nothing".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.uploads import FORM_OVERHEAD_BYTES
from likeness.v1 import common_pb2

CONSENT = {"consent": {"purpose": "headshots", "policy_version": "2025-01"}}
MULTIPART = {"Content-Type": "multipart/form-data; boundary=likeness-test-boundary"}
JSON = {"Content-Type": "application/json"}
JSON_LIMIT = 64 * 1024  # the default of LIKENESS_MAX_JSON_BODY_BYTES
MAX_UPLOAD_BYTES = 1024 * 1024  # as conftest configures the app
MAX_FILES = 4


class CountedBody:
    """A request body of `chunks` chunks of `size` bytes, remembering how many the app pulled."""

    def __init__(self, chunks: int, size: int = 16 * 1024, head: bytes = b"") -> None:
        self.chunks = chunks
        self.size = size
        self.head = head
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for number in range(self.chunks):
            self.pulled += 1
            yield (self.head if number == 0 else b"") + b" " * self.size

    @property
    def length(self) -> int:
        return len(self.head) + self.chunks * self.size


def _sample(metrics: str, series: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def error(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# ------------------------------------------------------------------------------------------ bodies


async def test_a_declared_body_over_the_json_limit_is_413_unread_and_before_authentication(client) -> None:
    body = CountedBody(chunks=8)  # 128 KiB
    response = await client.post(
        "/v1/subjects", content=body, headers={**JSON, "Content-Length": str(body.length)}
    )
    assert response.status_code == 413, response.text
    assert error(response) == "payload_too_large"
    assert body.pulled == 0
    assert response.headers["connection"] == "close", "the unread body is not drained to keep the connection"
    # Counted as a refusal, and in the requests by the route's template (never the path).
    metrics = client.app.state.metrics.render().decode()
    assert _sample(metrics, 'likeness_gateway_refused_total{reason="body_too_large"}') >= 1
    assert (
        _sample(metrics, 'likeness_gateway_requests_total{method="POST",route="/v1/subjects",status="413"}')
        >= 1
    )


async def test_a_request_without_a_valid_token_never_has_its_body_read(client, auth) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, auth(ttl_seconds=-60)):
        body = CountedBody(chunks=2)  # under the limit, chunked: only the token stands in the way
        response = await client.post("/v1/subjects", content=body, headers={**JSON, **headers})
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert body.pulled == 0
        assert response.headers["connection"] == "close"


async def test_a_chunked_body_is_cut_at_the_limit_and_nothing_is_done(client, auth, fakes) -> None:
    opened = len(fakes.retention.opened)
    body = CountedBody(chunks=64, head=b'{"consent": {"purpose": "headshots", "policy_version": "1"}, "x": "')
    response = await client.post("/v1/subjects", content=body, headers={**JSON, **auth()})
    assert response.status_code == 413, response.text
    assert error(response) == "payload_too_large"
    assert body.pulled <= JSON_LIMIT // body.size + 2, "read up to the limit, not to the end"
    assert len(fakes.retention.opened) == opened
    assert response.headers["connection"] == "close"
    # A body within the limit is still read whole.
    small = await client.post("/v1/subjects", json=CONSENT, headers=auth())
    assert small.status_code == 201
    assert "connection" not in small.headers


async def test_an_upload_declared_over_its_limit_is_413_unread(client, new_subject, auth) -> None:
    subject = await new_subject()
    limit = MAX_FILES * MAX_UPLOAD_BYTES + FORM_OVERHEAD_BYTES
    body = CountedBody(chunks=1, size=16)
    response = await client.post(
        f"/v1/subjects/{subject}/photos",
        content=body,
        headers={**MULTIPART, "Content-Length": str(limit + 1)},
    )
    assert response.status_code == 413
    assert body.pulled == 0
    # The upload's limit is its own: a body over the JSON limit, within the upload's, is read.
    photo = b"\xff\xd8\xff\xe0" + bytes(200_000)
    multipart = (
        b'--likeness-test-boundary\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + photo + b"\r\n--likeness-test-boundary--\r\n"
    )
    accepted = await client.post(
        f"/v1/subjects/{subject}/photos", content=multipart, headers={**MULTIPART, **auth()}
    )
    assert accepted.status_code == 200, accepted.text


# ------------------------------------------------------------------------------------------ concurrency


async def test_requests_past_the_concurrency_limit_get_503_and_the_probes_still_answer(
    make_client, auth, fakes
) -> None:
    async with make_client(max_concurrent_requests=2) as client:
        subject = (await client.post("/v1/subjects", json=CONSENT, headers=auth())).json()["id"]
        fakes.retention.delays[subject] = 1.5
        try:
            slow = [
                asyncio.create_task(client.get(f"/v1/subjects/{subject}", headers=auth())) for _ in range(2)
            ]
            await asyncio.sleep(0.3)
            refused = await client.get("/v1/styles", headers=auth())
            assert refused.status_code == 503, refused.text
            assert error(refused) == "overloaded"
            assert int(refused.headers["Retry-After"]) >= 1
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            assert [(await task).status_code for task in slow] == [200, 200]
        finally:
            del fakes.retention.delays[subject]
        assert (await client.get("/v1/styles", headers=auth())).status_code == 200


# ------------------------------------------------------------------------------------------ rates


async def test_each_caller_has_its_bucket_under_its_tenants_total(make_client, auth, new_subject) -> None:
    limits = {
        "rate_limit_per_second": 0.01,
        "rate_limit_burst": 2,
        "tenant_rate_limit_per_second": 0.01,
        "tenant_rate_limit_burst": 3,
    }
    async with make_client(**limits) as client:
        anna, ben = "sub_01jbz3p5b7d9f1h3k5m7q9s1aa", "sub_01jbz3p5b7d9f1h3k5m7q9s1bb"
        tenant = "rates-acme"

        async def styles(subject: str) -> httpx.Response:
            return await client.get("/v1/styles", headers=auth(tenant=tenant, subject=subject))

        assert [(await styles(anna)).status_code for _ in range(3)] == [200, 200, 429]
        # Ben's own bucket is full, but the tenant has one token left of its 3.
        assert (await styles(ben)).status_code == 200
        limited = await styles(ben)
        assert limited.status_code == 429
        assert error(limited) == "rate_limited"
        assert limited.headers["Retry-After"].isdigit()
        # Another tenant is untouched.
        assert (await client.get("/v1/styles", headers=auth(tenant="rates-other"))).status_code == 200


# ------------------------------------------------------------------------------------------ long requests


async def test_event_streams_are_capped_per_caller_and_slots_come_back(make_client, auth, fakes) -> None:
    async with make_client(max_event_streams_per_caller=2) as client:
        subject = (await client.post("/v1/subjects", json=CONSENT, headers=auth())).json()["id"]
        training = await _finished_training(client, auth, fakes, subject)
        url = f"/v1/trainings/{training}/events"
        end_user = auth(subject=subject)
        fakes.retention.delays[subject] = 1.5  # each stream holds its slot while the subject is read
        try:
            held = [asyncio.create_task(client.get(url, headers=end_user)) for _ in range(2)]
            await asyncio.sleep(0.3)
            refused = await client.get(url, headers=end_user)
            assert refused.status_code == 429, refused.text
            assert error(refused) == "too_many_streams"
            assert int(refused.headers["Retry-After"]) >= 1
            # Another caller (the tenant's back end) has slots of its own.
            other = await client.get(url, headers=auth())
            assert other.status_code == 200, other.text
            assert [(await task).status_code for task in held] == [200, 200]
        finally:
            del fakes.retention.delays[subject]
        # Ended streams gave their slots back.
        assert (await client.get(url, headers=end_user)).status_code == 200


async def test_exports_are_capped_per_caller(make_client, auth, fakes) -> None:
    async with make_client(max_exports_per_caller=1) as client:
        subject = (await client.post("/v1/subjects", json=CONSENT, headers=auth())).json()["id"]
        url = f"/v1/subjects/{subject}/export"
        fakes.retention.delays[subject] = 1.5
        try:
            first = asyncio.create_task(client.get(url, headers=auth()))
            await asyncio.sleep(0.3)
            refused = await client.get(url, headers=auth())
            assert refused.status_code == 429, refused.text
            assert error(refused) == "too_many_exports"
            await first  # whatever the doubles make of it: its slot comes back when it ends
        finally:
            del fakes.retention.delays[subject]
        assert (await client.get(url, headers=auth())).status_code != 429


async def _finished_training(client: httpx.AsyncClient, auth: Any, fakes: Any, subject: str) -> str:
    upload = (
        b'--likeness-test-boundary\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0pixels\r\n--likeness-test-boundary--\r\n"
    )
    response = await client.post(
        f"/v1/subjects/{subject}/photos", content=upload, headers={**MULTIPART, **auth()}
    )
    assert response.status_code == 200, response.text
    started = await client.post(f"/v1/subjects/{subject}/trainings", json={}, headers=auth())
    assert started.status_code == 202, started.text
    training: str = started.json()["id"]
    # Finished: its stream is one `end` event, so each request ends (the ASGI transport waits for the end).
    fakes.trainer.trainings[("acme", training)].status = common_pb2.JOB_STATUS_SUCCEEDED
    return training


# ------------------------------------------------------------------------------------------ upload deadline


@pytest.mark.parametrize("with_key", [False, True], ids=["upload", "replayed-upload"])
async def test_an_upload_not_received_by_its_deadline_is_408_and_its_calls_end(
    make_client, auth, fakes, with_key: bool
) -> None:
    async with make_client(stream_timeout_seconds=1.0) as client:
        subject = (await client.post("/v1/subjects", json=CONSENT, headers=auth())).json()["id"]
        headers = {**MULTIPART, **auth()}
        if with_key:
            headers["Idempotency-Key"] = f"slow-{subject}"
            complete = (
                b'--likeness-test-boundary\r\nContent-Disposition: form-data; name="file"; '
                b'filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0p\r\n'
                b"--likeness-test-boundary--\r\n"
            )
            first = await client.post(f"/v1/subjects/{subject}/photos", content=complete, headers=headers)
            assert first.status_code == 200, first.text
        uploads_before = len(fakes.ingest.uploads)

        async def trickle() -> AsyncIterator[bytes]:
            yield (
                b'--likeness-test-boundary\r\nContent-Disposition: form-data; name="file"; '
                b'filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0'
            )
            for _ in range(100):  # 20 s at this pace, far past the deadline
                await asyncio.sleep(0.2)
                yield b"x"

        started = asyncio.get_running_loop().time()
        response = await client.post(f"/v1/subjects/{subject}/photos", content=trickle(), headers=headers)
        elapsed = asyncio.get_running_loop().time() - started
        assert response.status_code == 408, response.text
        assert error(response) == "upload_timeout"
        assert response.headers["connection"] == "close"
        assert elapsed < 5, "answered at the deadline (1 s), not when the body ended"
        if not with_key:
            assert len(fakes.ingest.uploads) == uploads_before + 1, "its ingest call had begun"
        else:
            assert len(fakes.ingest.uploads) == uploads_before, "a replay only drains (within the deadline)"
