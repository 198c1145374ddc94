"""Preparing a photo before it leaves the machine (pure logic on Pillow-built images, no server)."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image, ImageCms

from likeness_client.photo_prep import MAX_LONG_SIDE, PhotoNotPrepared, prepare_photo

RED, BLUE = (220, 20, 20), (20, 20, 220)


def two_halves(width: int, height: int) -> Image.Image:
    """Red on the left half, blue on the right: which way is up (and left) can be read off the pixels."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


def jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **options)
    return buffer.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_exif_orientation_is_applied_and_dropped() -> None:
    upright = two_halves(400, 200)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90° counter-clockwise: display turns it clockwise
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    prepared = decoded(prepare_photo("me.jpg", jpeg(stored, exif=exif.tobytes())).data)
    assert prepared.size == (400, 200)
    assert prepared.getpixel((50, 100)) == pytest.approx(RED, abs=12)
    assert prepared.getpixel((350, 100)) == pytest.approx(BLUE, abs=12)
    assert not prepared.getexif()


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + b"\0" * 4 + _s15(x) + _s15(y) + _s15(z)


def swapped_profile() -> bytes:
    """An RGB ICC profile whose red colorant is sRGB's green and whose green is sRGB's red."""
    gamma = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(2.2 * 256)) + b"\0\0"
    text = b"likeness swapped\0"
    tags = [
        (b"desc", b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 78),
        (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _xyz(0.3851, 0.7169, 0.0971)),  # sRGB's green
        (b"gXYZ", _xyz(0.4361, 0.2225, 0.0139)),  # sRGB's red
        (b"bXYZ", _xyz(0.1431, 0.0606, 0.7141)),
        (b"rTRC", gamma),
        (b"gTRC", gamma),
        (b"bTRC", gamma),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, tag in tags:
        body += b"\0" * (-(offset + len(body)) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(tag))
        body += tag
    header = (
        struct.pack(">I", 128 + len(table) + len(body))
        + b"\0" * 4
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
        + b"\0" * 48
    )
    return header + table + body


def test_an_embedded_icc_profile_is_converted_to_srgb_and_not_sent() -> None:
    profile = swapped_profile()
    ImageCms.ImageCmsProfile(io.BytesIO(profile))  # a valid profile, or the test proves nothing
    pure_red = Image.new("RGB", (300, 300), (255, 0, 0))
    prepared = decoded(prepare_photo("me.jpg", jpeg(pure_red, icc_profile=profile)).data)
    red, green, blue = prepared.getpixel((150, 150))  # type: ignore[misc]
    # In that profile (255, 0, 0) is sRGB's green: shown as green, so sent as green.
    assert green > 200
    assert red < 60
    assert blue < 60
    assert "icc_profile" not in prepared.info


def test_the_long_side_is_capped_and_a_small_photo_is_not_enlarged() -> None:
    big = prepare_photo("big.png", _png(two_halves(MAX_LONG_SIDE + 1000, 2000)))
    assert decoded(big.data).size == (MAX_LONG_SIDE, round(2000 * MAX_LONG_SIDE / (MAX_LONG_SIDE + 1000)))
    small = prepare_photo("small.png", _png(two_halves(640, 480)))
    assert decoded(small.data).size == (640, 480)
    assert small.name == "small.jpg"
    assert small.content_type == "image/jpeg"


def test_transparency_is_flattened_on_white() -> None:
    image = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    prepared = decoded(prepare_photo("clear.png", _png(image)).data)
    assert prepared.mode == "RGB"
    assert prepared.getpixel((10, 10)) == pytest.approx((255, 255, 255), abs=3)


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("notes.jpg", b"just some text", "not a JPEG, PNG, WebP or HEIC"),
        ("scan.jpg", b"II*\x00" + bytes(100), "not a JPEG, PNG, WebP or HEIC"),
        ("broken.jpg", b"\xff\xd8\xff\xe0 not really", "could not be decoded"),
    ],
)
def test_what_is_not_a_photo_is_refused_and_not_sent(name: str, data: bytes, problem: str) -> None:
    with pytest.raises(PhotoNotPrepared, match=problem) as refused:
        prepare_photo(name, data)
    assert refused.value.name == name


def test_an_animation_is_refused() -> None:
    frames = [Image.new("RGB", (300, 300), colour) for colour in (RED, BLUE)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(PhotoNotPrepared, match="animation"):
        prepare_photo("moving.png", buffer.getvalue())


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
