"""The whole journey through the gateway against the real servers, then a scan of what they stored."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import PIL.Image
import pytest

from likeness_cli.journey import GatewayClient, JourneyResult, run_journey
from likeness_cli.samples import sample_photos
from likeness_cli.stack import DevStack
from renderer.marking import is_marked

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW = 64
BLOCK = WINDOW // 2
#: Signatures long enough that ciphertext will not produce them by chance.
SIGNATURES = {
    "png": b"\x89PNG\r\n\x1a\n",
    "jpeg-jfif": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "jpeg-exif": b"Exif\x00\x00MM\x00*",
    "jpeg-exif-le": b"Exif\x00\x00II*\x00",
    "jpeg-dqt": b"\xff\xd8\xff\xdb\x00\x43",
    "webp": b"WEBPVP8",
}


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


def _files(*roots: Path) -> Iterable[Path]:
    for root in roots:
        yield from (p for p in root.rglob("*") if p.is_file())


#: Runs of a few repeated values (a black border, zero padding) identify nobody and occur in any file.
MIN_DISTINCT = 12


def _blocks(data: bytes) -> dict[bytes, list[int]]:
    index: dict[bytes, list[int]] = {}
    for start in range(0, len(data) - BLOCK + 1, BLOCK):
        block = data[start : start + BLOCK]
        if len(set(block)) >= MIN_DISTINCT:
            index.setdefault(block, []).append(start)
    return index


def _shares_a_window(haystack: bytes, needle: bytes, index: dict[bytes, list[int]]) -> bool:
    """True if some WINDOW-byte run of `needle` (with enough distinct values to mean something) occurs in
    `haystack`.

    Any such run contains a BLOCK-aligned block of the needle, so only offsets matching an indexed block
    are extended and compared. (A meaningful 64-byte run has a block with MIN_DISTINCT values or more.)
    """
    for offset in range(len(haystack) - BLOCK + 1):
        starts = index.get(haystack[offset : offset + BLOCK])
        if not starts:
            continue
        for start in starts:
            for shift in range(0, BLOCK + 1):
                n_start, h_start = start - shift, offset - shift
                if n_start < 0 or h_start < 0:
                    continue
                if (
                    needle[n_start : n_start + WINDOW] == haystack[h_start : h_start + WINDOW]
                    and len(needle[n_start : n_start + WINDOW]) == WINDOW
                ):
                    return True
    return False


def test_nothing_plaintext_in_s3_or_nats_data(
    stack: DevStack, journey: JourneyResult, photos: list[tuple[str, bytes]]
) -> None:
    endpoints = stack.infra.endpoints
    secrets_of_the_person: list[tuple[str, bytes]] = []
    for name, data in photos:
        secrets_of_the_person.append((f"{name} file bytes", data))
        with PIL.Image.open(io.BytesIO(data)) as image:
            secrets_of_the_person.append((f"{name} pixels", image.convert("RGB").tobytes()))
    for image in journey.images:
        secrets_of_the_person.append((f"render {image.image_id}", image.data))
    indexes = [(label, data, _blocks(data)) for label, data in secrets_of_the_person]

    scanned = 0
    for path in _files(endpoints.s3_data_dir, endpoints.nats_store_dir):
        content = path.read_bytes()
        scanned += len(content)
        for kind, signature in SIGNATURES.items():
            assert signature not in content, f"{kind} signature found in {path}"
        for label, data, index in indexes:
            assert not _shares_a_window(content, data, index), f"a {WINDOW}-byte run of {label} is in {path}"
    assert scanned > 0, "the scan read nothing: wrong data directories?"


def test_the_scan_finds_what_it_looks_for() -> None:
    """The scanner itself must be able to fail: a planted run is found, low-entropy padding is not."""
    secret = bytes(range(256)) * 4
    index = _blocks(secret)
    assert _shares_a_window(b"noise" * 50 + secret[100:164] + b"noise", secret, index)
    assert not _shares_a_window(b"noise" * 50 + secret[100:160] + b"noise", secret, index)
    assert not _shares_a_window(b"\0" * 4096, b"\0" * 4096, _blocks(b"\0" * 4096))
