"""Server-Sent Events on the real stack: a training and a render followed from their current state to
their end, fed by the workers' NATS events, with the same JSON as their GET."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack


def read_events(client: httpx.Client, path: str) -> tuple[list[tuple[str, Any]], httpx.Response]:
    """Every event of the stream, read as it arrives, until the server closes it."""
    events: list[tuple[str, Any]] = []
    with client.stream("GET", path, timeout=httpx.Timeout(30, read=60)) as response:
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(":"):
                continue  # a keep-alive comment
            if not line:
                if fields:
                    events.append((fields["event"], json.loads(fields["data"])))
                    fields = {}
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
    return events, response


@pytest.fixture(scope="module")
def client(stack: DevStack) -> Iterator[httpx.Client]:
    tenant = f"sse-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {stack.mint_token(tenant=tenant)}"}
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=60) as http:
        yield http


def test_a_training_then_a_render_are_followed_to_their_end(client: httpx.Client) -> None:
    consent = {"consent": {"purpose": "headshots", "policy_version": "2026-01"}}
    subject = client.post("/v1/subjects", json=consent).json()["id"]
    files = [("file", (name, data, "image/jpeg")) for name, data in sample_photos(2)]
    assert client.post(f"/v1/subjects/{subject}/photos", files=files).status_code == 200
    training = client.post(f"/v1/subjects/{subject}/trainings", json={}).json()["id"]

    events, response = read_events(client, f"/v1/trainings/{training}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [name for name, _ in events]
    assert names[-1] == "end"
    assert set(names[:-1]) <= {"progress"}
    assert names.count("end") == 1
    assert events[-1][1] == client.get(f"/v1/trainings/{training}").json()
    assert events[-1][1]["status"] == "succeeded"
    steps = [data["progress"]["step"] for _, data in events]
    assert steps == sorted(steps), "progress only moves forward"

    body = {"training_id": training, "styles": ["linkedin"], "images_per_style": 1, "seed": 3}
    render = client.post(f"/v1/subjects/{subject}/renders", json=body).json()["id"]
    events, _ = read_events(client, f"/v1/renders/{render}/events")
    assert events[-1][0] == "end"
    assert events[-1][1] == client.get(f"/v1/renders/{render}").json()
    assert events[-1][1]["status"] == "succeeded"

    # A stream of something already finished is just its end.
    again, _ = read_events(client, f"/v1/renders/{render}/events")
    assert again == [events[-1]]


def test_a_stream_of_something_not_visible_is_refused_before_it_starts(stack: DevStack, client) -> None:
    other = stack.mint_token(tenant=f"sse-other-{uuid.uuid4().hex[:6]}")
    response = httpx.get(
        f"{stack.gateway_url}/v1/trainings/trn_01jbz3p5b7d9f1h3k5m7q9s1vw/events",
        headers={"Authorization": f"Bearer {other}"},
        timeout=30,
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
