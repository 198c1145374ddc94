"""The whole journey through the gateway against the real servers, then a scan of what they stored."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
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


class RunIndex:
    """Finds any WINDOW-byte run of several secrets inside a haystack, fast enough for hundreds of MB.

    Any WINDOW-byte run of a secret contains a BLOCK-aligned block of it; blocks with at least
    MIN_DISTINCT byte values (a meaningful run has one) are indexed by their first 8 bytes. numpy compares
    the 8 bytes at every offset of the haystack against that index at once; the few candidates are then
    extended and compared in full.
    """

    def __init__(self, secrets: list[tuple[str, bytes]]) -> None:
        self.secrets = secrets
        self.starts: dict[int, list[tuple[int, int]]] = {}
        for number, (_, data) in enumerate(secrets):
            for start in range(0, len(data) - BLOCK + 1, BLOCK):
                block = data[start : start + BLOCK]
                if len(set(block)) >= MIN_DISTINCT:
                    key = int.from_bytes(block[:8], "little")
                    self.starts.setdefault(key, []).append((number, start))
        self.keys = np.sort(np.fromiter(self.starts, dtype=np.uint64, count=len(self.starts)))
        # A 2^24-entry bitmap of the keys' low bits rejects almost every offset with one lookup.
        self.bitmap = np.zeros(1 << 24, dtype=bool)
        self.bitmap[(self.keys & np.uint64(0xFFFFFF)).astype(np.int64)] = True

    def find(self, haystack: bytes) -> str | None:
        """The label of a secret one of whose runs occurs in `haystack`, or None."""
        if len(haystack) < WINDOW or not len(self.keys):
            return None
        every_offset = np.ndarray(shape=(len(haystack) - 7,), dtype="<u8", buffer=haystack, strides=(1,))
        maybe = np.flatnonzero(self.bitmap[(every_offset & np.uint64(0xFFFFFF)).astype(np.int64)])
        values = every_offset[maybe]
        slots = np.minimum(np.searchsorted(self.keys, values), len(self.keys) - 1)
        for offset in maybe[self.keys[slots] == values]:
            for number, start in self.starts[int(every_offset[offset])]:
                if self._extends(haystack, int(offset), self.secrets[number][1], start):
                    return self.secrets[number][0]
        return None

    @staticmethod
    def _extends(haystack: bytes, offset: int, needle: bytes, start: int) -> bool:
        for shift in range(0, BLOCK + 1):
            n_start, h_start = start - shift, offset - shift
            if n_start < 0 or h_start < 0:
                continue
            run = needle[n_start : n_start + WINDOW]
            if len(run) == WINDOW and run == haystack[h_start : h_start + WINDOW]:
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
    index = RunIndex(secrets_of_the_person)

    scanned = 0
    for path in _files(endpoints.s3_data_dir, endpoints.nats_store_dir):
        content = path.read_bytes()
        scanned += len(content)
        for kind, signature in SIGNATURES.items():
            assert signature not in content, f"{kind} signature found in {path}"
        found = index.find(content)
        assert found is None, f"a {WINDOW}-byte run of {found} is in {path}"
    assert scanned > 0, "the scan read nothing: wrong data directories?"


def test_the_scan_finds_what_it_looks_for() -> None:
    """The scanner itself must be able to fail: a planted run is found, low-entropy padding is not."""
    secret = bytes(range(256)) * 4
    index = RunIndex([("secret", secret), ("padding", b"\0" * 4096)])
    assert index.find(b"noise" * 50 + secret[100:164] + b"noise") == "secret"
    assert index.find(b"noise" * 50 + secret[100:160] + b"noise") is None, "63 bytes are not a run"
    assert index.find(secret[5:69]) == "secret", "at the very start of a file"
    assert index.find(b"\0" * 4096) is None
