"""Format sniffing and the decoder allow-list."""

from __future__ import annotations

import io

import pytest
from PIL import Image, UnidentifiedImageError

from ingest.formats import ImageFormat, open_image, sniff_format


def _pillow_bytes(image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), (120, 80, 40)).save(buffer, format=image_format, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("image_format", "expected"),
    [
        ("JPEG", ImageFormat.JPEG),
        ("PNG", ImageFormat.PNG),
        ("WEBP", ImageFormat.WEBP),
        ("HEIF", ImageFormat.HEIF),
    ],
)
def test_accepted_formats_are_recognised_by_their_bytes(image_format: str, expected: ImageFormat) -> None:
    assert sniff_format(_pillow_bytes(image_format)) is expected


REFUSED = {
    "gif": lambda: _pillow_bytes("GIF"),
    "tiff": lambda: _pillow_bytes("TIFF"),
    "bmp": lambda: _pillow_bytes("BMP"),
    "avif": lambda: _pillow_bytes("AVIF"),
    "ico": lambda: _pillow_bytes("ICO"),
    "svg": lambda: b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="300" height="300"/>',
    "svg without xml declaration": lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>',
    "pdf": lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
    "eps": lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 300 300\n",
    "binary eps": lambda: b"\xc5\xd0\xd3\xc6" + b"\0" * 60,
    "big-endian tiff header": lambda: b"MM\x00*" + b"\0" * 60,
    "text": lambda: b"hello, this is not a photo",
    "empty": lambda: b"",
    "riff but not webp": lambda: b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\0" * 40,
    "mp4": lambda: b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\0" * 40,
    "jpeg signature cut short": lambda: b"\xff\xd8",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_everything_else_is_refused(name: str) -> None:
    assert sniff_format(REFUSED[name]()) is None


def test_generic_heif_brand_needs_a_hevc_compatible_brand() -> None:
    def ftyp(major: bytes, *compatible: bytes) -> bytes:
        payload = major + b"\0\0\0\0" + b"".join(compatible)
        return (8 + len(payload)).to_bytes(4, "big") + b"ftyp" + payload + b"\0" * 32

    assert sniff_format(ftyp(b"mif1", b"mif1", b"heic")) is ImageFormat.HEIF
    assert sniff_format(ftyp(b"heix", b"mif1")) is ImageFormat.HEIF
    assert sniff_format(ftyp(b"mif1", b"mif1", b"avif")) is None
    assert sniff_format(ftyp(b"avif", b"mif1", b"miaf")) is None


def test_the_decoder_is_the_one_the_bytes_announce() -> None:
    # A GIF labelled as JPEG by a caller must not be handed to any other decoder.
    with pytest.raises(UnidentifiedImageError):
        open_image(_pillow_bytes("GIF"), ImageFormat.JPEG)
    image = open_image(_pillow_bytes("PNG"), ImageFormat.PNG)
    assert image.format == "PNG"
