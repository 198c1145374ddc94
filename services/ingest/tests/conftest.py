"""Shared fixtures for the ingest tests: one warmed face analyzer, default limits, photo builders, the
hostile corpus, and the checks every stored crop must pass (exiftool's view included).

Photos are derived from scikit-image's public-domain astronaut portrait (see likeness_dev.samples), built
in memory; nothing is written to disk (exiftool reads them from a pipe).
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ingest.config import IngestSettings
from ingest.faces import FaceAnalyzer
from ingest.limits import SanitizeLimits
from ingest.sandbox.pool import DecoderPool
from ingest.sanitize import sanitize
from ingest.verdicts import SanitizeResult
from likeness_dev.samples import PLANTED_SECRETS, CorpusFile, astronaut, hostile_corpus

Encode = Callable[..., bytes]


@pytest.fixture(scope="session")
def analyzer() -> FaceAnalyzer:
    face_analyzer = FaceAnalyzer()
    face_analyzer.warm_up()
    return face_analyzer


@pytest.fixture(scope="session")
def limits() -> SanitizeLimits:
    return SanitizeLimits()


@pytest.fixture(scope="session")
def run_sanitize(analyzer: FaceAnalyzer, limits: SanitizeLimits) -> Callable[[bytes], SanitizeResult]:
    """sanitize() with the photo decoded in this process: the pipeline's own tests."""

    def run(data: bytes) -> SanitizeResult:
        return sanitize(data, limits, analyzer)

    return run


@pytest.fixture(scope="session")
def decoder_pool(limits: SanitizeLimits) -> Iterator[DecoderPool]:
    """The decoding sandbox as the service starts it (production worker, default settings, two workers)."""
    settings = IngestSettings(env="development")  # the defaults of every decode_* setting
    pool = DecoderPool(2, limits.max_bytes, limits.max_pixels, settings.sandbox_limits())
    pool.start()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def run_sanitize_sandboxed(
    analyzer: FaceAnalyzer, limits: SanitizeLimits, decoder_pool: DecoderPool
) -> Callable[[bytes], SanitizeResult]:
    """sanitize() as the service runs it: every byte of the upload parsed in the sandbox's workers."""

    def run(data: bytes) -> SanitizeResult:
        return sanitize(data, limits, analyzer, decoder_pool)

    return run


@pytest.fixture(scope="session")
def portrait() -> Image.Image:
    """The astronaut, upright, 1024x1024: a photo ingest must accept."""
    return astronaut().resize((1024, 1024), Image.Resampling.LANCZOS)


def _encode(image: Image.Image, image_format: str = "JPEG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    if image_format == "JPEG":
        options.setdefault("quality", 90)
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def encode() -> Encode:
    """encode(image, "JPEG" | "PNG" | "WEBP" | "HEIF" | ..., **pillow_save_options) -> bytes"""
    return _encode


@pytest.fixture(scope="session")
def portrait_jpeg(portrait: Image.Image) -> bytes:
    return _encode(portrait)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes | None) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = zlib.compress(rows if rows is not None else b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="session")
def png_with_header() -> Callable[[int, int], bytes]:
    """A PNG whose IHDR declares width x height RGB but whose data is a few bytes: a decompression bomb."""

    def build(width: int, height: int) -> bytes:
        return _raw_png(width, height, 8, 2, None)

    return build


@pytest.fixture(scope="session")
def png_rgb16() -> Callable[[np.ndarray[Any, Any]], bytes]:
    """A 16-bit-per-channel RGB PNG (which Pillow cannot write) from an HxWx3 uint16 array."""

    def build(pixels: np.ndarray[Any, Any]) -> bytes:
        height, width, _ = pixels.shape
        big_endian = pixels.astype(">u2")
        rows = b"".join(b"\0" + big_endian[y].tobytes() for y in range(height))
        return _raw_png(width, height, 16, 2, rows)

    return build


@pytest.fixture(scope="session")
def png_chunk_types() -> Callable[[bytes], list[str]]:
    """The chunk types of a PNG, in order; fails if anything follows IEND."""

    def parse(data: bytes) -> list[str]:
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        offset, kinds = 8, []
        while offset < len(data):
            (length,) = struct.unpack(">I", data[offset : offset + 4])
            kinds.append(data[offset + 4 : offset + 8].decode("ascii"))
            offset += 12 + length
            if kinds[-1] == "IEND":
                break
        assert offset == len(data), "bytes after IEND"
        return kinds

    return parse


# --- ICC profiles -------------------------------------------------------------------------------------
# A minimal ICC v2 matrix/TRC RGB profile, so a test can give pixels a colour space that is clearly not
# sRGB. Colorants are D50-adapted XYZ, as ICC wants.
SRGB_RED = (0.4361, 0.2225, 0.0139)
SRGB_GREEN = (0.3851, 0.7169, 0.0971)
SRGB_BLUE = (0.1431, 0.0606, 0.7141)


def _s15fixed16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + b"\0" * 4 + _s15fixed16(x) + _s15fixed16(y) + _s15fixed16(z)


def _gamma_tag(gamma: float) -> bytes:
    return b"curv" + b"\0" * 4 + struct.pack(">I", 1) + struct.pack(">H", round(gamma * 256)) + b"\0\0"


def _description_tag(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_text)) + ascii_text + b"\0" * 78


def _rgb_icc_profile(
    red: tuple[float, float, float], green: tuple[float, float, float], blue: tuple[float, float, float]
) -> bytes:
    tags = [
        (b"desc", _description_tag("likeness test profile")),
        (b"cprt", b"text" + b"\0" * 4 + b"none\0"),
        (b"wtpt", _xyz_tag(0.9642, 1.0, 0.8249)),
        (b"rXYZ", _xyz_tag(*red)),
        (b"gXYZ", _xyz_tag(*green)),
        (b"bXYZ", _xyz_tag(*blue)),
        (b"rTRC", _gamma_tag(2.2)),
        (b"gTRC", _gamma_tag(2.2)),
        (b"bTRC", _gamma_tag(2.2)),
    ]
    first_offset = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for signature, body in tags:
        data += b"\0" * (-(first_offset + len(data)) % 4)
        table += signature + struct.pack(">II", first_offset + len(data), len(body))
        data += body
    size = 128 + len(table) + len(data)
    header = (
        struct.pack(">I", size)
        + b"\0" * 4
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28
        + _s15fixed16(0.9642)
        + _s15fixed16(1.0)
        + _s15fixed16(0.8249)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + table + data


@pytest.fixture(scope="session")
def swapped_icc_profile() -> bytes:
    """An RGB profile whose red colorant is sRGB's green and whose green is sRGB's red."""
    return _rgb_icc_profile(SRGB_GREEN, SRGB_RED, SRGB_BLUE)


# --- the hostile corpus and what a clean output looks like ---------------------------------------------


@pytest.fixture(scope="session")
def corpus() -> dict[str, CorpusFile]:
    """likeness_dev.samples.hostile_corpus() by file name, built once."""
    return {entry.name: entry for entry in hostile_corpus()}


#: What exiftool may report about a crop ingest stored: the file's structure and nothing else (plus its
#: "System:" group, which describes the pipe it read, not the image).
STRUCTURAL_TAGS = frozenset(
    {
        "SourceFile",
        "ExifTool:ExifToolVersion",
        "File:FileType",
        "File:FileTypeExtension",
        "File:MIMEType",
        "PNG:ImageWidth",
        "PNG:ImageHeight",
        "PNG:BitDepth",
        "PNG:ColorType",
        "PNG:Compression",
        "PNG:Filter",
        "PNG:Interlace",
        "Composite:ImageSize",
        "Composite:Megapixels",
    }
)

Tags = dict[str, Any]


@pytest.fixture(scope="session")
def exiftool() -> Callable[[bytes], Tags]:
    """exiftool(data) -> every tag exiftool finds ("Group:Tag" -> value), read from a pipe.

    Fails (does not skip) without exiftool: the metadata checks are part of what ingest must show.
    """
    path = shutil.which("exiftool")
    if path is None:
        pytest.fail(
            "exiftool is missing: install Debian's libimage-exiftool-perl "
            "(apt-get install -y libimage-exiftool-perl); the project's CI setup does",
            pytrace=False,
        )

    def read(data: bytes) -> Tags:
        completed = subprocess.run(
            [path, "-json", "-a", "-u", "-G1", "-"], input=data, capture_output=True, check=True, timeout=60
        )
        [tags] = json.loads(completed.stdout)
        assert isinstance(tags, dict)
        return tags

    return read


@pytest.fixture(scope="session")
def assert_clean_crop(
    exiftool: Callable[[bytes], Tags], png_chunk_types: Callable[[bytes], list[str]]
) -> Callable[[bytes], None]:
    """Fails unless ``data`` is a PNG of pixels only: IHDR, IDAT and IEND chunks, nothing after IEND, no
    tag beyond the structural ones for exiftool, and none of the corpus' planted secrets."""

    def check(data: bytes) -> None:
        chunks = png_chunk_types(data)  # also fails on bytes after IEND
        assert chunks[0] == "IHDR"
        assert chunks[-1] == "IEND"
        assert set(chunks[1:-1]) == {"IDAT"}, chunks
        tags = exiftool(data)
        extra = {key: value for key, value in tags.items() if key not in STRUCTURAL_TAGS}
        extra = {key: value for key, value in extra.items() if not key.startswith("System:")}
        assert extra == {}, f"exiftool finds more than the structure: {extra}"
        for secret in PLANTED_SECRETS:
            assert secret not in data

    return check
