"""Unsupported, corrupt and useless uploads get a specific 4xx through the real stack, never a 500."""

from __future__ import annotations

import io
import struct
import zlib

import PIL.Image
import pytest

from likeness_dev.journey import GatewayClient
from likeness_dev.samples import no_face_photo, sample_photos, two_faces_photo


def _png_bomb(side: int = 60_000) -> bytes:
    """A valid-looking PNG whose header declares side x side pixels (3.6 GP) with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + chunk(b"IEND", b"")
    )


def _gif() -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", (300, 300), "red").save(out, format="GIF")
    return out.getvalue()


CASES = {
    "animation.gif": (_gif, "unsupported_format"),
    "drawing.svg": (
        lambda: b'<svg xmlns="http://www.w3.org/2000/svg" width="400" height="400"/>',
        "unsupported_format",
    ),
    "document.pdf": (lambda: b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "unsupported_format"),
    "random.bin": (lambda: bytes(range(256)) * 64, "unsupported_format"),
    "truncated.jpg": (lambda: sample_photos(1)[0][1][:5000], "corrupt_image"),
    "bomb.png": (_png_bomb, "image_too_large"),
    "landscape.jpg": (no_face_photo, "no_face"),
    "two-people.jpg": (two_faces_photo, "multiple_faces"),
}


@pytest.fixture(scope="module")
def subject_id(stack: object, gateway_module: GatewayClient) -> str:
    body = {"consent": {"purpose": "headshots", "policy_version": "1"}}
    return str(gateway_module.json("POST", "/v1/subjects", expect=(201,), json=body)["id"])


@pytest.mark.parametrize("filename", sorted(CASES))
def test_bad_upload_is_a_specific_4xx(gateway_module: GatewayClient, subject_id: str, filename: str) -> None:
    make, code = CASES[filename]
    # Something that is not a photo at all is an unsupported media type; a photo we cannot use is 422.
    status = 415 if code == "unsupported_format" else 422
    response = gateway_module.call(
        "POST",
        f"/v1/subjects/{subject_id}/photos",
        expect=(status,),
        files=[("file", (filename, make(), "image/jpeg"))],
    )
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    assert body["photos"][0]["reasons"][0]["code"] == code


def test_bad_uploads_change_nothing(gateway_module: GatewayClient, subject_id: str) -> None:
    photos = gateway_module.json("GET", f"/v1/subjects/{subject_id}/photos")["photos"]
    assert all(p["status"] == "rejected" for p in photos), "no rejected upload may leave an accepted photo"
    training = gateway_module.call("POST", f"/v1/subjects/{subject_id}/trainings", expect=(409,), json={})
    assert training.json()["error"]["code"] == "no_accepted_photos"
