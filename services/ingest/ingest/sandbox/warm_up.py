"""Load every decoder a worker will use before its seccomp filter closes file opening for good.

Pillow imports its format plugins lazily, pillow-heif dlopens libheif's codecs on first use, LittleCMS
builds its transforms on first use, and Pillow reaches the TIFF plugin only to read EXIF. Once the filter
is on, none of that could load (opening a file fails), so a worker first decodes one tiny generated image
of each kind that `decode_image` handles, through `decode_image` itself, at full size and reduced: JPEG
(with EXIF orientation, an ICC profile, progressive, CMYK, several frames), PNG (alpha, 16-bit, palette),
WebP (lossy, lossless), HEIC, and the refusals (animations, broken files). The images are made here, in
memory; none is an upload.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from PIL import Image, ImageCms

from ingest.decode import Decoder
from ingest.limits import SanitizeLimits
from ingest.reasons import RejectedInput

_SIZE = (48, 32)
#: Limits that let the tiny images through; decoding checks only these three.
_LIMITS = SanitizeLimits(max_bytes=1 << 20, max_pixels=1 << 20, min_side=8)


def warm_up(decode: Decoder) -> int:
    """Decode every sample at full size and reduced; returns how many decoded (refusals are expected
    for the animations and the broken files, and count as exercised too)."""
    decoded = 0
    for data in _samples():
        for min_side in (None, 8):
            try:
                decode(data, _LIMITS, min_side=min_side)
                decoded += 1
            except RejectedInput:
                pass
    return decoded


def _samples() -> Iterator[bytes]:
    picture = Image.new("RGB", _SIZE, (200, 120, 40))
    picture.paste((20, 60, 220), (0, 0, 24, 16))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the orientation path
    exif[0x010F] = "warm-up"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()

    yield _encode(picture, "JPEG", exif=exif.tobytes(), icc_profile=icc)
    yield _encode(picture, "JPEG", progressive=True)
    yield _encode(picture.convert("CMYK"), "JPEG")
    yield _encode(picture, "MPO", save_all=True, append_images=[picture])
    yield _encode(picture.convert("RGBA"), "PNG", icc_profile=icc, exif=exif.tobytes())
    yield _encode(picture.convert("LA"), "PNG")
    yield _encode(picture.convert("P"), "PNG", transparency=0)
    yield _encode(picture.convert("I;16"), "PNG")
    yield _encode(picture.convert("1"), "PNG")
    yield _encode(picture, "WEBP", quality=80, icc_profile=icc, exif=exif.tobytes())
    yield _encode(picture.convert("RGBA"), "WEBP", lossless=True)
    yield _encode(picture, "HEIF", quality=50, exif=exif.tobytes())
    yield _encode(picture, "PNG", save_all=True, append_images=[picture.rotate(90)])
    yield _encode(picture, "WEBP", save_all=True, append_images=[picture.rotate(90)])
    whole = _encode(picture, "JPEG")
    yield whole[: len(whole) // 2]
    yield _encode(picture, "PNG")[:60]


def _encode(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()
