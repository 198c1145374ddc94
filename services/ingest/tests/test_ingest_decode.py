"""Decoding untrusted bytes: limits before pixels, corrupt data, orientation, colour and depth."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from ingest.decode import decode_image
from ingest.formats import ImageFormat
from ingest.limits import SanitizeLimits
from ingest.verdicts import ReasonCode, RejectedInput

Encode = Callable[..., bytes]


def _rejection(data: bytes, limits: SanitizeLimits) -> ReasonCode:
    with pytest.raises(RejectedInput) as caught:
        decode_image(data, limits)
    return caught.value.code


def test_byte_limit_is_checked_before_anything_is_parsed(limits: SanitizeLimits) -> None:
    # Not an image at all: had the bytes been parsed first, this would be unsupported_format.
    assert _rejection(b"x" * (limits.max_bytes + 1), limits) is ReasonCode.FILE_TOO_LARGE
    small = SanitizeLimits(max_bytes=1000)
    assert _rejection(b"\xff\xd8\xff" + b"\0" * 1000, small) is ReasonCode.FILE_TOO_LARGE


@pytest.mark.parametrize(("width", "height"), [(20000, 20000), (10000, 10000), (9000, 9000), (60000, 900)])
def test_declared_pixel_count_rejects_a_bomb_before_its_pixels_are_decoded(
    width: int,
    height: int,
    limits: SanitizeLimits,
    png_with_header: Callable[[int, int], bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 20000^2 trips Pillow's bomb error, 10000^2 its (now fatal) warning, the others only our own limit.
    # Loading would allocate gigabytes: make any load fail loudly, which would show as corrupt_image.
    def no_load(self: ImageFile.ImageFile) -> Any:
        raise AssertionError("pixels must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_load)
    bomb = png_with_header(width, height)
    assert len(bomb) < 200
    assert _rejection(bomb, limits) is ReasonCode.IMAGE_TOO_LARGE


def test_pillow_bomb_warning_becomes_a_rejection_even_with_a_generous_limit(
    png_with_header: Callable[[int, int], bytes],
) -> None:
    generous = SanitizeLimits(max_pixels=400_000_000)
    assert _rejection(png_with_header(10000, 10000), generous) is ReasonCode.IMAGE_TOO_LARGE


@pytest.mark.parametrize(("width", "height"), [(200, 200), (1000, 255), (255, 4000)])
def test_small_images_are_rejected(width: int, height: int, limits: SanitizeLimits, encode: Encode) -> None:
    data = encode(Image.new("RGB", (width, height), (90, 90, 90)), "PNG")
    assert _rejection(data, limits) is ReasonCode.IMAGE_TOO_SMALL


def test_truncated_and_garbled_files_are_corrupt(
    limits: SanitizeLimits, portrait_jpeg: bytes, encode: Encode
) -> None:
    rng = np.random.default_rng(7)
    png = encode(Image.new("RGB", (400, 400), (10, 200, 30)), "PNG", compress_level=0)
    heic = encode(Image.new("RGB", (400, 400), (10, 200, 30)), "HEIF")
    webp = encode(Image.new("RGB", (400, 400), (10, 200, 30)), "WEBP")
    cases = {
        "truncated jpeg": portrait_jpeg[: len(portrait_jpeg) * 6 // 10],
        "jpeg header only": portrait_jpeg[:400],
        "jpeg magic then noise": b"\xff\xd8\xff\xe0" + rng.bytes(5000),
        "truncated png": png[: len(png) // 2],
        "png signature then noise": b"\x89PNG\r\n\x1a\n" + rng.bytes(5000),
        "png with a broken IDAT": png[:60] + bytes(b ^ 0x5A for b in png[60:200]) + png[200:],
        "truncated heic": heic[: len(heic) // 2],
        "heic brand then noise": heic[:40] + rng.bytes(3000),
        "truncated webp": webp[: len(webp) // 2],
        "webp header then noise": webp[:12] + rng.bytes(3000),
    }
    for name, data in cases.items():
        assert _rejection(data, limits) is ReasonCode.CORRUPT_IMAGE, name


@pytest.mark.parametrize("image_format", ["PNG", "WEBP"])
def test_animations_are_refused(image_format: str, limits: SanitizeLimits) -> None:
    frames = [Image.new("RGB", (300, 300), (shade, 0, 0)) for shade in (0, 120, 240)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=image_format, save_all=True, append_images=frames[1:])
    assert _rejection(buffer.getvalue(), limits) is ReasonCode.UNSUPPORTED_FORMAT


def test_a_single_frame_png_still_decodes(limits: SanitizeLimits, encode: Encode) -> None:
    decoded = decode_image(encode(Image.new("RGB", (300, 280), (1, 2, 3)), "PNG"), limits)
    assert decoded.source_format is ImageFormat.PNG
    assert decoded.image.size == (300, 280)


def _quadrants() -> Image.Image:
    """400x300, red top-left, green top-right, blue bottom-left, white bottom-right."""
    image = Image.new("RGB", (400, 300), (255, 255, 255))
    image.paste((255, 0, 0), (0, 0, 200, 150))
    image.paste((0, 255, 0), (200, 0, 400, 150))
    image.paste((0, 0, 255), (0, 150, 200, 300))
    return image


# Stored pixels for each orientation: the upright picture turned the opposite way.
STORED_FOR = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", sorted(STORED_FOR))
def test_exif_orientation_is_applied(orientation: int, limits: SanitizeLimits, encode: Encode) -> None:
    upright = _quadrants()
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(upright.transpose(STORED_FOR[orientation]), "PNG", exif=exif.tobytes())
    decoded = decode_image(data, limits).image
    assert decoded.size == upright.size
    for point, colour in {(50, 50): (255, 0, 0), (350, 50): (0, 255, 0), (50, 250): (0, 0, 255)}.items():
        assert decoded.getpixel(point) == colour


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


def test_cmyk_jpeg_becomes_rgb(limits: SanitizeLimits, portrait: Image.Image, encode: Encode) -> None:
    decoded = decode_image(encode(portrait.convert("CMYK"), "JPEG", quality=95), limits)
    assert decoded.image.mode == "RGB"
    assert _mean_difference(decoded.image, portrait) < 6


def test_sixteen_bit_greyscale_is_scaled_not_clipped(limits: SanitizeLimits, encode: Encode) -> None:
    ramp = np.tile(np.array([0, 257, 32896, 65535], dtype=np.uint16).repeat(75), (300, 1))
    image = Image.fromarray(ramp)
    assert image.mode == "I;16"
    decoded = decode_image(encode(image, "PNG"), limits).image
    assert [decoded.getpixel((x, 10)) for x in (0, 100, 200, 299)] == [
        (0, 0, 0),
        (1, 1, 1),
        (128, 128, 128),
        (255,) * 3,
    ]


def test_sixteen_bit_rgb_png_decodes(limits: SanitizeLimits, png_rgb16: Callable[[Any], bytes]) -> None:
    pixels = np.zeros((300, 300, 3), dtype=np.uint16)
    pixels[..., 0], pixels[..., 1] = 65535, 32896
    decoded = decode_image(png_rgb16(pixels), limits).image
    assert decoded.getpixel((5, 5)) == (255, 128, 0)


def test_alpha_is_flattened_onto_white(limits: SanitizeLimits, encode: Encode) -> None:
    rgba = Image.new("RGBA", (300, 300), (200, 10, 10, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 150, 300))
    rgba.paste((0, 0, 0, 128), (150, 0, 300, 100))
    decoded = decode_image(encode(rgba, "PNG"), limits).image
    assert decoded.getpixel((10, 10)) == (255, 255, 255)
    assert decoded.getpixel((200, 200)) == (200, 10, 10)
    assert all(abs(channel - 127) <= 1 for channel in decoded.getpixel((200, 50)))  # type: ignore[union-attr]


def test_palette_transparency_and_greyscale_alpha_are_flattened(
    limits: SanitizeLimits, encode: Encode
) -> None:
    palette = Image.new("P", (300, 300), 1)
    palette.putpalette([0, 0, 0, 30, 60, 90] + [0] * 762)
    palette.paste(0, (0, 0, 100, 300))
    decoded = decode_image(encode(palette, "PNG", transparency=0), limits).image
    assert decoded.getpixel((10, 10)) == (255, 255, 255)
    assert decoded.getpixel((200, 10)) == (30, 60, 90)

    grey_alpha = Image.new("LA", (300, 300), (40, 0))
    decoded = decode_image(encode(grey_alpha, "PNG"), limits).image
    assert decoded.getpixel((10, 10)) == (255, 255, 255)


def test_embedded_icc_profile_is_converted_to_srgb(
    limits: SanitizeLimits, encode: Encode, swapped_icc_profile: bytes
) -> None:
    # In the swapped profile, the first channel is sRGB's green: a viewer shows this "red" as green.
    red_pixels = Image.new("RGB", (300, 300), (255, 0, 0))
    for image_format in ("PNG", "JPEG", "WEBP"):
        decoded = decode_image(
            encode(red_pixels, image_format, icc_profile=swapped_icc_profile), limits
        ).image
        red, green, blue = decoded.getpixel((150, 150))  # type: ignore[misc]
        assert green > 200, image_format
        assert max(red, blue) < 60, image_format


def test_an_unusable_icc_profile_is_ignored(limits: SanitizeLimits, encode: Encode) -> None:
    data = encode(Image.new("RGB", (300, 300), (255, 0, 0)), "PNG", icc_profile=b"not a profile" * 20)
    assert decode_image(data, limits).image.getpixel((1, 1)) == (255, 0, 0)


def test_decoded_image_carries_no_metadata(
    limits: SanitizeLimits, portrait: Image.Image, encode: Encode
) -> None:
    exif = Image.Exif()
    exif[0x010F] = "Camera"
    data = encode(portrait, "JPEG", exif=exif.tobytes(), comment=b"hello", icc_profile=b"junk")
    decoded = decode_image(data, limits).image
    assert decoded.mode == "RGB"
    assert decoded.info == {}
    assert len(decoded.getexif()) == 0


def test_heic_orientation_is_applied_once(limits: SanitizeLimits, encode: Encode) -> None:
    # pillow-heif applies HEIF's own rotation and resets the EXIF tag; turning again would be wrong.
    upright = _quadrants()
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(upright.transpose(STORED_FOR[6]), "HEIF", exif=exif.tobytes(), quality=95)
    decoded = decode_image(data, limits).image
    assert decoded.size == upright.size
    red, green, blue = decoded.getpixel((50, 50))  # type: ignore[misc]
    assert red > 240
    assert max(green, blue) < 15


def test_multi_picture_jpeg_uses_its_primary_image(limits: SanitizeLimits) -> None:
    # Phones store depth maps and HDR gain maps as extra JPEG frames (MPO): not an animation.
    buffer = io.BytesIO()
    primary, extra = Image.new("RGB", (300, 300), (250, 0, 0)), Image.new("RGB", (300, 300), (0, 0, 250))
    primary.save(buffer, format="MPO", save_all=True, append_images=[extra])
    decoded = decode_image(buffer.getvalue(), limits)
    assert decoded.source_format is ImageFormat.JPEG
    assert decoded.image.getpixel((5, 5))[0] > 240  # type: ignore[index]


# --- decoding a JPEG only as large as needed -------------------------------------------------------------


@pytest.mark.parametrize(
    ("min_side", "expected"),
    [(None, (2000, 1500)), (1500, (2000, 1500)), (700, (1000, 750)), (375, (500, 375)), (100, (250, 188))],
)
def test_a_jpeg_is_decoded_at_the_smallest_dct_scale_that_is_large_enough(
    min_side: int | None, expected: tuple[int, int], limits: SanitizeLimits, encode: Encode
) -> None:
    data = encode(_quadrants().resize((2000, 1500)), "JPEG")
    decoded = decode_image(data, limits, min_side=min_side)
    assert decoded.image.size == expected
    assert decoded.source_size == (2000, 1500)
    assert decoded.scale == expected[0] / 2000
    # Still the same picture, only smaller.
    width, height = expected
    assert decoded.image.getpixel((width // 4, height // 4)) == pytest.approx((254, 0, 0), abs=3)
    assert decoded.image.getpixel((3 * width // 4, 3 * height // 4)) == pytest.approx((255, 255, 255), abs=3)


def test_a_reduced_decode_reports_the_upright_full_size(limits: SanitizeLimits, encode: Encode) -> None:
    stored = _quadrants().resize((1600, 1200)).transpose(STORED_FOR[6])
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encode(stored, "JPEG", exif=exif.tobytes()), limits, min_side=300)
    assert decoded.source_size == (1600, 1200)
    assert decoded.image.size == (400, 300)
    assert decoded.image.getpixel((40, 40)) == pytest.approx((254, 0, 0), abs=3)


@pytest.mark.parametrize(
    ("image_format", "mode"),
    [("PNG", "RGB"), ("PNG", "RGBA"), ("WEBP", "RGB"), ("HEIF", "RGB"), ("PNG", "P")],
)
def test_other_formats_are_reduced_right_after_decoding(
    image_format: str, mode: str, limits: SanitizeLimits, encode: Encode
) -> None:
    picture = _quadrants().resize((1200, 900)).convert(mode)
    decoded = decode_image(encode(picture, image_format), limits, min_side=300)
    assert decoded.source_size == (1200, 900)
    if mode == "P":  # a palette cannot be averaged: converted at full size (palette images are small)
        assert decoded.image.size == (1200, 900)
        return
    assert decoded.image.size == (400, 300), "reduced 3x: the largest factor keeping 300 px"
    assert decoded.scale == pytest.approx(1 / 3)
    assert decoded.image.getpixel((300, 225)) == pytest.approx((255, 255, 255), abs=3)
    assert decoded.image.getpixel((100, 75)) == pytest.approx((255, 0, 0), abs=6)


def test_a_transparent_photo_reduced_is_flattened_onto_white(limits: SanitizeLimits, encode: Encode) -> None:
    rgba = Image.new("RGBA", (1200, 900), (200, 10, 10, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 600, 900))
    decoded = decode_image(encode(rgba, "PNG"), limits, min_side=300).image
    assert decoded.size == (400, 300)
    assert decoded.getpixel((50, 150)) == (255, 255, 255)
    assert decoded.getpixel((350, 150)) == (200, 10, 10)


def test_a_reduced_decode_still_checks_the_full_size_first(limits: SanitizeLimits, encode: Encode) -> None:
    # 300x200 declared: too small, whatever scale it would be decoded at.
    small = encode(Image.new("RGB", (300, 200), (9, 9, 9)), "JPEG")
    with pytest.raises(RejectedInput) as caught:
        decode_image(small, limits, min_side=100)
    assert caught.value.code is ReasonCode.IMAGE_TOO_SMALL
