"""The whole journey through the gateway's public API: photos in, headshots out, person erased.

Used by `make demo` (via `likeness demo`) and by the end-to-end test, so both exercise the same calls a
tenant's service would make.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

Say = Callable[[str], None]


class JourneyError(Exception):
    pass


@dataclass
class DownloadedImage:
    image_id: str
    style: str
    seed: int
    content_type: str
    data: bytes = field(repr=False)


@dataclass
class JourneyResult:
    subject_id: str
    photos: list[dict[str, Any]]
    training: dict[str, Any]
    render: dict[str, Any]
    images: list[DownloadedImage]
    erasure: dict[str, Any]
    after_erasure: dict[str, int]


class WaitOutRateLimits(httpx.HTTPTransport):
    """Sends a request again after the wait a `429 rate_limited` names, as a patient client would.

    The gateway weighs the rate before a route sees the request, so a refused request did nothing and
    sending it again is safe for every method. Other 429s (a quota, too many exports) are answers, not
    waits, and are returned as they are.
    """

    def __init__(self, max_waits: int = 120) -> None:
        super().__init__()
        self.max_waits = max_waits

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for _ in range(self.max_waits):
            response = super().handle_request(request)
            if response.status_code != 429:
                return response
            response.read()
            if b'"rate_limited"' not in response.content:
                return response
            response.close()
            time.sleep(float(response.headers.get("Retry-After", "1")))
        return super().handle_request(request)


class GatewayClient:
    """A thin client of the v1 API (the full typed client arrives with the gateway issue).

    `patient` clients wait out rate limits (`WaitOutRateLimits`): for tests that spend a caller's bucket
    on purpose and go on with the same caller.
    """

    def __init__(self, base_url: str, token: str, timeout: float = 60.0, patient: bool = False) -> None:
        self.http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=WaitOutRateLimits() if patient else None,
        )

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, expect: Sequence[int] = (200,), **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code not in expect:
            raise JourneyError(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
        return response

    def json(self, method: str, path: str, expect: Sequence[int] = (200,), **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.call(method, path, expect, **kwargs).json()
        return body

    def wait(
        self, path: str, done: Callable[[dict[str, Any]], bool], timeout: float, say: Say, label: str
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            record = self.json("GET", path)
            progress = record.get("progress") or {}
            step, total = progress.get("step", ""), progress.get("total_steps", "")
            line = f"{label}: {record.get('status')} {step}/{total}"
            if line != last:
                say(line)
                last = line
            if done(record):
                return record
            if time.monotonic() > deadline:
                raise JourneyError(f"{label} did not finish within {timeout:.0f}s (last: {record})")
            time.sleep(0.5)


def run_journey(
    client: GatewayClient,
    photos: Sequence[tuple[str, bytes]],
    styles: Sequence[str] = ("linkedin", "studio_portrait"),
    images_per_style: int = 4,
    training_steps: int = 0,
    seed: int = 1234,
    say: Say = print,
    timeout: float = 600.0,
) -> JourneyResult:
    subject = client.json(
        "POST",
        "/v1/subjects",
        expect=(201,),
        json={
            "external_ref": "demo-person-1",
            "consent": {"purpose": "headshots", "policy_version": "2026-01"},
        },
    )
    subject_id = subject["id"]
    say(f"subject opened: {subject_id}")

    files = [("file", (name, data, "application/octet-stream")) for name, data in photos]
    uploaded = client.json("POST", f"/v1/subjects/{subject_id}/photos", files=files)["photos"]
    accepted = [p for p in uploaded if p["status"] == "accepted"]
    say(f"photos: {len(accepted)} accepted, {len(uploaded) - len(accepted)} rejected")
    if not accepted:
        raise JourneyError(f"no photo was accepted: {uploaded}")

    body = {"steps": training_steps} if training_steps else {}
    training_id = client.json("POST", f"/v1/subjects/{subject_id}/trainings", expect=(202,), json=body)["id"]
    training = client.wait(
        f"/v1/trainings/{training_id}",
        lambda r: r["status"] in {"succeeded", "failed", "cancelled"},
        timeout,
        say,
        "training",
    )
    if training["status"] != "succeeded":
        raise JourneyError(f"training ended {training['status']}: {training.get('error')}")

    request = {
        "training_id": training_id,
        "styles": list(styles),
        "images_per_style": images_per_style,
        "seed": seed,
    }
    render_id = client.json("POST", f"/v1/subjects/{subject_id}/renders", expect=(202,), json=request)["id"]
    render = client.wait(
        f"/v1/renders/{render_id}",
        lambda r: r["status"] in {"succeeded", "failed", "cancelled"},
        timeout,
        say,
        "render",
    )
    if render["status"] != "succeeded":
        raise JourneyError(f"render ended {render['status']}: {render.get('error')}")

    images = []
    for image in render["images"]:
        response = client.call("GET", image["url"])
        images.append(
            DownloadedImage(
                image["id"],
                image["style"],
                image["seed"],
                response.headers.get("content-type", ""),
                response.content,
            )
        )
    say(f"downloaded {len(images)} images")

    erasure_id = client.json("DELETE", f"/v1/subjects/{subject_id}", expect=(202,))["erasure_id"]
    erasure = client.wait(
        f"/v1/erasures/{erasure_id}", lambda r: r["status"] == "completed", timeout, say, "erasure"
    )

    # The owners of the training and render records drop them on `subject.erased`; allow them a moment.
    paths = {
        "subject": f"/v1/subjects/{subject_id}",
        "training": f"/v1/trainings/{training_id}",
        "render": f"/v1/renders/{render_id}",
        "image": render["images"][0]["url"],
    }
    after = {name: _status_once_gone(client, path, timeout=30.0) for name, path in paths.items()}
    say(f"after erasure: {after}")
    return JourneyResult(subject_id, uploaded, training, render, images, erasure, after)


def _status_once_gone(client: GatewayClient, path: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        status = client.call("GET", path, expect=(200, 404, 410)).status_code
        if status != 200:
            return status
        if time.monotonic() > deadline:
            raise JourneyError(f"{path} is still served after erasure")
        time.sleep(0.25)
