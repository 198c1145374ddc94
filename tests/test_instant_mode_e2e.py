"""Instant mode through the dev stack on the tiny models: one photo → instant render → download → erase,
no training, with the journey's privacy checks (leak scan included).

The renderer runs the tiny IP-Adapter plus-face the stack writes beside the tiny base model
(`likeness_dev.tiny_model_cache.ensure_tiny_identity_adapter`). An instant render is refused without an
accepted photo (409 `no_accepted_photos`) and without a live `instant` grant (403 `consent_required`,
even with a `headshots` grant). The photo's embedding is computed in the worker's memory and never
stored, so after erasure nothing of the person remains: the scan finds neither the photo nor an image.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import PIL.Image
import pytest

from likeness_dev.journey import GatewayClient
from likeness_dev.leaks import photo_secrets, scan_plaintext
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_marks.iptc import is_marked

pytestmark = pytest.mark.slow

TERMINAL = {"succeeded", "failed", "cancelled"}
STYLES = ["linkedin", "studio_portrait"]
PER_STYLE = 2
RENDER = {"instant": True, "styles": STYLES, "images_per_style": PER_STYLE, "seed": 99}


@dataclass
class InstantJourney:
    subject_id: str
    photo: tuple[str, bytes]
    refused: dict[str, httpx.Response]
    render: dict[str, Any]
    images: list[tuple[str, bytes]]
    erasure: dict[str, Any]
    after_erasure: dict[str, int]


def _gone(client: GatewayClient, path: str) -> int:
    for _ in range(120):
        status = client.call("GET", path, expect=(200, 404, 410)).status_code
        if status != 200:
            return status
        time.sleep(0.25)
    raise AssertionError(f"{path} is still served after erasure")


def run_instant_journey(stack: DevStack) -> InstantJourney:
    tenant = GatewayClient(stack.gateway_url, stack.mint_token())
    try:
        subject_id = tenant.json(
            "POST",
            "/v1/subjects",
            expect=(201,),
            json={
                "external_ref": "instant-1",
                "consent": {"purpose": "headshots", "policy_version": "2026-01"},
            },
        )["id"]
        renders = f"/v1/subjects/{subject_id}/renders"
        refused = {"no_photo": tenant.http.post(renders, json=RENDER)}
        photo = sample_photos(1)[0]
        uploaded = tenant.json(
            "POST", f"/v1/subjects/{subject_id}/photos", files=[("file", (photo[0], photo[1], "image/jpeg"))]
        )["photos"]
        assert [p["status"] for p in uploaded] == ["accepted"], uploaded
        # A `headshots` grant is not enough: instant mode reads the photo under its own purpose.
        refused["no_instant_grant"] = tenant.http.post(renders, json=RENDER)
        tenant.json(
            "POST",
            f"/v1/subjects/{subject_id}/consents",
            expect=(201,),
            json={"purpose": "instant", "policy_version": "2026-01"},
        )
        render_id = tenant.json("POST", renders, expect=(202,), json=RENDER)["id"]
        render = tenant.wait(f"/v1/renders/{render_id}", lambda r: r["status"] in TERMINAL, 300, print, "r")
        images = [(image["url"], tenant.call("GET", image["url"]).content) for image in render["images"]]
        erasure_id = tenant.json("DELETE", f"/v1/subjects/{subject_id}", expect=(202,))["erasure_id"]
        erasure = tenant.wait(
            f"/v1/erasures/{erasure_id}", lambda r: r["status"] == "completed", 120, print, "erasure"
        )
        paths = {"subject": f"/v1/subjects/{subject_id}", "render": f"/v1/renders/{render_id}"}
        paths |= {f"image {n}": url for n, (url, _) in enumerate(images)}
        after = {name: _gone(tenant, path) for name, path in paths.items()}
        return InstantJourney(subject_id, photo, refused, render, images, erasure, after)
    finally:
        tenant.close()


@pytest.fixture(scope="module")
def journey(stack: DevStack) -> InstantJourney:
    return run_instant_journey(stack)


def test_instant_render_needs_a_photo_and_an_instant_grant(journey: InstantJourney) -> None:
    no_photo = journey.refused["no_photo"]
    assert no_photo.status_code == 409, no_photo.text[:300]
    assert no_photo.json()["error"]["code"] == "no_accepted_photos"
    no_grant = journey.refused["no_instant_grant"]
    assert no_grant.status_code == 403, no_grant.text[:300]
    assert no_grant.json()["error"]["code"] == "consent_required"
    assert "instant" in no_grant.json()["error"]["message"]


def test_one_photo_gives_marked_headshots_without_training(journey: InstantJourney) -> None:
    render = journey.render
    assert render["status"] == "succeeded", render.get("error")
    assert (render["instant"], render["training_id"]) == (True, None)
    assert len(journey.images) == len(STYLES) * PER_STYLE
    assert {image["style"] for image in render["images"]} == set(STYLES)
    # The identity gate scored against the photo's own face template.
    assert render["quality"]["templates"] == 1, render["quality"]
    for _, data in journey.images:
        with PIL.Image.open(io.BytesIO(data)) as decoded:
            assert decoded.format == "PNG"
        assert is_marked(data), "every output must say it is AI-generated"


def test_erasure_leaves_nothing_of_the_person(journey: InstantJourney) -> None:
    erasure = journey.erasure
    assert erasure["key_destroyed_at"] <= erasure["completed_at"]
    # The photo, its face template and every image: no embedding was ever stored beside them.
    assert erasure["objects_deleted"] >= 2 + len(journey.images)
    assert journey.after_erasure["subject"] == 410
    assert all(status in (404, 410) for status in journey.after_erasure.values()), journey.after_erasure


def test_nothing_of_the_person_in_clear(stack: DevStack, journey: InstantJourney) -> None:
    endpoints = stack.infra.endpoints
    secrets = photo_secrets([journey.photo])
    secrets += [(f"render image {url}", data) for url, data in journey.images]
    scan = scan_plaintext([endpoints.s3_data_dir, endpoints.nats_store_dir, stack.tmp_dir], secrets)
    assert scan.findings == [], "\n".join(str(finding) for finding in scan.findings)
    assert scan.bytes_scanned > 0


@pytest.fixture(scope="module")
def sdxl_stack(tmp_path_factory: pytest.TempPathFactory, server_process: None) -> Iterator[DevStack]:
    """A stack of its own on the tiny SDXL model (its servers too: the SD 1.5 stack's workers would take
    these jobs from shared work queues)."""
    started = DevStack.start(
        Path(tmp_path_factory.mktemp("instant-sdxl")),
        base_family="sdxl",
        progress=lambda line: print(f"[sdxl stack] {line}", flush=True),
        extra_env={"LIKENESS_INFERENCE_STEPS": "4"},
    )
    try:
        yield started
    finally:
        started.stop()


def test_instant_mode_on_sdxl(sdxl_stack: DevStack) -> None:
    journey = run_instant_journey(sdxl_stack)
    assert journey.render["status"] == "succeeded", journey.render.get("error")
    assert len(journey.images) == len(STYLES) * PER_STYLE
    assert all(status in (404, 410) for status in journey.after_erasure.values())
    secrets = photo_secrets([journey.photo]) + [(url, data) for url, data in journey.images]
    endpoints = sdxl_stack.infra.endpoints
    scan = scan_plaintext([endpoints.s3_data_dir, endpoints.nats_store_dir, sdxl_stack.tmp_dir], secrets)
    assert scan.findings == [], "\n".join(str(finding) for finding in scan.findings)
