"""Which file formats we decode, recognised by their leading bytes and opened only through an allow-list.

The file name, the declared content type and Pillow's own guessing are all ignored: a format is what its
magic bytes say it is, and Pillow is then asked to use exactly that one decoder. Everything else (GIF,
SVG, PDF, TIFF, BMP, EPS, text, empty files) is refused before any parser sees it.
"""

from __future__ import annotations

import io
from enum import StrEnum

import pillow_heif
from PIL import Image

# HEIC/HEIF support is a Pillow plugin; registering is idempotent. Thumbnails, depth maps and auxiliary
# images inside a HEIF container are never used, so pillow-heif is told not to decode them.
pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)


class ImageFormat(StrEnum):
    """Accepted formats; each value is the Pillow format id of the only decoder allowed for it."""

    JPEG = "JPEG"
    PNG = "PNG"
    WEBP = "WEBP"
    HEIF = "HEIF"


# ISO-BMFF brands that mean HEVC-coded HEIF (what phones write as .heic). AVIF ("avif", "avis") is a
# different codec that this service does not accept.
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
# Generic HEIF brands: acceptable only when a compatible brand says the content is HEVC.
_GENERIC_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"


def sniff_format(data: bytes) -> ImageFormat | None:
    """The format announced by the leading bytes, or None when it is not one we accept."""
    if data.startswith(_JPEG_SIGNATURE):
        return ImageFormat.JPEG
    if data.startswith(_PNG_SIGNATURE):
        return ImageFormat.PNG
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ImageFormat.WEBP
    if _is_heic(data):
        return ImageFormat.HEIF
    return None


def _is_heic(data: bytes) -> bool:
    # An ISO-BMFF file starts with an "ftyp" box: size (4), "ftyp", major brand (4), minor version (4),
    # then compatible brands (4 each) up to the box size.
    if len(data) < 16 or data[4:8] != b"ftyp":
        return False
    box_size = int.from_bytes(data[:4], "big")
    if box_size < 16 or box_size > len(data) or box_size > 4096:
        return False
    major = data[8:12]
    compatible = {data[i : i + 4] for i in range(16, box_size - 3, 4)}
    if major in _HEIC_BRANDS:
        return True
    return major in _GENERIC_HEIF_BRANDS and bool(compatible & _HEIC_BRANDS)


def open_image(data: bytes, image_format: ImageFormat) -> Image.Image:
    """Open lazily (header only, no pixels decoded) with the single decoder for ``image_format``.

    Raises whatever Pillow raises for unreadable data (``PIL.UnidentifiedImageError``, ``OSError``,
    ``SyntaxError``...) and ``Image.DecompressionBombError``; the caller classifies those.
    """
    return Image.open(io.BytesIO(data), formats=[image_format.value])
