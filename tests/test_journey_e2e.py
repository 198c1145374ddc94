"""The whole journey through the gateway against the real servers, then a scan of what they stored."""

from __future__ import annotations

import io

import PIL.Image
import pytest

from likeness_dev.journey import GatewayClient, JourneyResult, run_journey
from likeness_dev.leaks import photo_secrets, scan_plaintext
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_marks.iptc import is_marked

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photos() -> list[tuple[str, bytes]]:
    return sample_photos(4)


@pytest.fixture(scope="module")
def journey(stack: DevStack, photos: list[tuple[str, bytes]]) -> JourneyResult:
    client = GatewayClient(stack.gateway_url, stack.mint_token())
    try:
        return run_journey(client, photos, images_per_style=4, say=print, timeout=300)
    finally:
        client.close()


def test_photos_are_accepted_and_headshots_come_out(journey: JourneyResult) -> None:
    assert all(p["status"] == "accepted" for p in journey.photos), journey.photos
    assert journey.training["status"] == "succeeded"
    assert len(journey.images) == 8
    assert {i.style for i in journey.images} == {"linkedin", "studio_portrait"}
    for image in journey.images:
        assert image.content_type == "image/png"
        with PIL.Image.open(io.BytesIO(image.data)) as decoded:
            assert decoded.size[0] > 0
        assert is_marked(image.data), "every output must say it is AI-generated"


def test_erasure_destroys_the_key_then_everything_else(journey: JourneyResult) -> None:
    erasure = journey.erasure
    assert erasure["status"] == "completed"
    assert erasure["key_destroyed_at"]
    assert erasure["completed_at"]
    assert erasure["key_destroyed_at"] <= erasure["completed_at"]
    assert erasure["objects_deleted"] >= len(journey.photos) + len(journey.images) + 1
    assert journey.subject_id not in str(erasure.get("subject_hmac"))
    assert journey.after_erasure["subject"] == 410
    assert all(status in (404, 410) for status in journey.after_erasure.values())


def test_nothing_plaintext_in_s3_or_nats_data(
    stack: DevStack, journey: JourneyResult, photos: list[tuple[str, bytes]]
) -> None:
    endpoints = stack.infra.endpoints
    secrets_of_the_person = photo_secrets(photos)
    secrets_of_the_person += [(f"render {image.image_id}", image.data) for image in journey.images]
    scan = scan_plaintext(
        [endpoints.s3_data_dir, endpoints.nats_store_dir, stack.tmp_dir], secrets_of_the_person
    )
    assert scan.findings == [], "\n".join(str(finding) for finding in scan.findings)
    assert scan.bytes_scanned > 0, "the scan read nothing: wrong data directories?"
