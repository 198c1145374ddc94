"""Sample photos of a real face for demos and tests, made offline from scikit-image's astronaut picture.

``skimage.data.astronaut()`` is NASA's portrait of astronaut Eileen Collins (public domain), 512x512 RGB.
Each sample is a different crop, scale, mirror, slight rotation or exposure of it, saved as JPEG, PNG or
WebP like a phone or an editor would: some JPEGs are stored sideways or upside down with an EXIF
orientation tag, and most carry an invented GPS position, camera make and capture time, so the
metadata stripping and orientation handling of ingest are exercised by every demo upload.

Also here: another person (``other_person_photo``, from scikit-image's CC0 ``camera()``), and the hostile
corpus (``hostile_corpus``): files of every kind ingest must refuse or clean, each with its verdict.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageEnhance, ImageFilter
from PIL.PngImagePlugin import PngInfo

# Invented position (a field near Null Island's meridian); it only has to be recognisable if it leaks.
_FAKE_GPS_LATITUDE = (47.0, 22.0, 33.3)
_FAKE_GPS_LONGITUDE = (8.0, 32.0, 11.1)

# Stored pixels for an EXIF orientation: the upright picture turned the other way, so a viewer that
# applies the tag shows it upright again.
_STORE_FOR_ORIENTATION: dict[int, Image.Transpose] = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


@cache
def _astronaut_pixels() -> bytes:
    from skimage import data  # imported lazily: scikit-image is slow to import and only needed here

    pixels = np.ascontiguousarray(data.astronaut(), dtype=np.uint8)  # type: ignore[no-untyped-call]
    return pixels.tobytes()


def astronaut() -> Image.Image:
    """The 512x512 RGB astronaut portrait, upright, as a new image."""
    return Image.frombytes("RGB", (512, 512), _astronaut_pixels())


@dataclass(frozen=True)
class _Recipe:
    extension: str
    make: Callable[[Image.Image], Image.Image]
    orientation: int = 1
    with_metadata: bool = True


def _framed(
    box: tuple[int, int, int, int], size: tuple[int, int], *, degrees: float = 0.0, mirror: bool = False
) -> Callable[[Image.Image], Image.Image]:
    """A framing of the portrait: turned by ``degrees`` about its centre, cropped to ``box``, resized."""

    def make(image: Image.Image) -> Image.Image:
        if degrees:
            image = image.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=_ROTATION_FILL)
        framed = image.crop(box)
        if mirror:
            framed = framed.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return framed.resize(size, _LANCZOS)

    return make


def _tint(image: Image.Image, red: float, blue: float) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32) * np.array([red, 1.0, blue], dtype=np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))


_LANCZOS = Image.Resampling.LANCZOS
# The portrait's dark backdrop, for the corners a turn uncovers.
_ROTATION_FILL = (24, 24, 32)

# Every recipe keeps the face whole (its box is about (175, 76)-(266, 167) in the 512 px portrait), at
# least 256 px on the shorter side, sharp and well exposed, and clear of the rotations at which dlib's
# HOG detector weakens. The framings differ enough that ingest does not take any two for the same picture
# (their perceptual hashes are 20+ bits apart, mirror images included; the duplicate check allows 10),
# so all eight can be accepted for one subject. test_cli_samples checks all of that.
_RECIPES: tuple[_Recipe, ...] = (
    _Recipe("jpg", _framed((40, 0, 430, 512), (780, 1024))),
    _Recipe("jpg", _framed((110, 0, 512, 300), (1072, 800)), orientation=6),
    _Recipe("png", _framed((80, 0, 512, 450), (960, 1000), mirror=True)),
    _Recipe(
        "webp",
        lambda im: ImageEnhance.Brightness(_framed((40, 0, 380, 380), (928, 928), degrees=5)(im)).enhance(
            1.08
        ),
    ),
    _Recipe(
        "jpg",
        lambda im: ImageEnhance.Brightness(_framed((40, 10, 330, 240), (1160, 920), degrees=-5)(im)).enhance(
            0.88
        ),
        orientation=3,
    ),
    _Recipe(
        "jpg",
        lambda im: _tint(_framed((110, 0, 380, 240), (900, 800), degrees=5)(im), 1.05, 0.93),
        orientation=8,
    ),
    _Recipe("png", _framed((110, 10, 430, 380), (864, 1000), degrees=5), with_metadata=False),
    _Recipe("jpg", lambda im: ImageEnhance.Color(_framed((80, 10, 430, 300), (840, 696))(im)).enhance(0.6)),
)
DISTINCT_SAMPLES = len(_RECIPES)


def sample_photos(count: int = 6) -> list[tuple[str, bytes]]:
    """``count`` sample uploads as (file name, file bytes), e.g. ``("astronaut-01.jpg", b"...")``.

    The first eight (``DISTINCT_SAMPLES``) are different framings, all accepted for one subject. Later
    ones repeat them with a slightly different exposure: each is accepted on its own, but is a
    ``duplicate`` of its original for a subject that already has that. Deterministic.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    base = astronaut()
    samples = []
    for index in range(count):
        recipe = _RECIPES[index % len(_RECIPES)]
        image = recipe.make(base)
        round_ = index // len(_RECIPES)
        if round_:
            image = ImageEnhance.Brightness(image).enhance(1.0 + 0.04 * (round_ if round_ % 2 else -round_))
        name = f"astronaut-{index + 1:02d}.{recipe.extension}"
        samples.append((name, _encode(image, recipe)))
    return samples


def write_sample_photos(out_dir: Path, count: int = 6) -> list[Path]:
    """Write :func:`sample_photos` into ``out_dir`` (created if missing) and return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in sample_photos(count):
        path = out_dir / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def no_face_photo() -> bytes:
    """A 600x400 JPEG of a cup of coffee (``skimage.data.coffee()``, public domain): no face in it."""
    from skimage import data

    buffer = io.BytesIO()
    coffee = np.ascontiguousarray(data.coffee(), dtype=np.uint8)  # type: ignore[no-untyped-call]
    Image.fromarray(coffee).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def other_person_photo() -> bytes:
    """A 600x600 JPEG of another person: the head of scikit-image's ``camera()`` photographer (CC0).

    Enlarged from a small part of a 512 px photo, then sharpened so that ingest's quality checks pass
    and only the identity check can tell it from the astronaut (dlib distance about 0.8).
    """
    from skimage import data

    camera = np.ascontiguousarray(data.camera(), dtype=np.uint8)  # type: ignore[no-untyped-call]
    head = Image.fromarray(camera).convert("RGB").crop((120, 40, 360, 280)).resize((600, 600), _LANCZOS)
    buffer = io.BytesIO()
    head.filter(ImageFilter.UnsharpMask(radius=2, percent=120, threshold=2)).save(
        buffer, format="JPEG", quality=92
    )
    return buffer.getvalue()


def two_faces_photo() -> bytes:
    """A 960x576 JPEG with two astronaut faces side by side (the portrait and its mirror image)."""
    head = astronaut().crop((96, 0, 416, 384))
    both = Image.new("RGB", (head.width * 2, head.height))
    both.paste(head, (0, 0))
    both.paste(head.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (head.width, 0))
    buffer = io.BytesIO()
    both.resize((960, 576), _LANCZOS).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def fake_exif(orientation: int = 1) -> bytes:
    """An EXIF block with an invented camera, capture time and GPS position, and the given orientation."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Likeness Sample Camera"
    exif[ExifTags.Base.Model] = "Astronaut 1"
    exif[ExifTags.Base.DateTime] = "2024:05:04 12:34:56"
    exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = _FAKE_GPS_LATITUDE
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = _FAKE_GPS_LONGITUDE
    return exif.tobytes()


@cache
def _srgb_icc() -> bytes:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return profile.tobytes()


def _encode(upright: Image.Image, recipe: _Recipe) -> bytes:
    stored = upright
    if recipe.orientation in _STORE_FOR_ORIENTATION:
        stored = upright.transpose(_STORE_FOR_ORIENTATION[recipe.orientation])
    options: dict[str, object] = {}
    if recipe.with_metadata:
        options["exif"] = fake_exif(recipe.orientation)
    buffer = io.BytesIO()
    if recipe.extension == "jpg":
        if recipe.with_metadata:
            options["icc_profile"] = _srgb_icc()
            options["comment"] = b"Likeness sample photo"
        stored.save(buffer, format="JPEG", quality=90, **options)
    elif recipe.extension == "webp":
        stored.save(buffer, format="WEBP", quality=90, **options)
    else:
        stored.save(buffer, format="PNG", **options)
    return buffer.getvalue()


# --- the hostile corpus ----------------------------------------------------------------------------------
# Files of every kind an attacker, a careless app or a phone can send: metadata that would give a person
# away, pixels stored in unusual ways, files built to exhaust memory or crash a decoder, things that are
# not photos at all, and photos that are useless for training. Each carries the one verdict ingest must
# give it. Built in memory from the public-domain pictures above; the secrets in them are invented.

ACCEPTED = "accepted"
#: Strings planted in the metadata of the corpus: none may appear in anything ingest stores.
PLANTED_SECRETS = (
    b"Likeness Sample Camera",
    b"Jane Q. Secret",
    b"Springfield Secret Street",
    b"secret caption",
    b"secret comment",
    b"SECRET TRAILER",
    b"secret-xmp-creator",
)
_XMP = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""'
    b' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/">'
    b"<dc:creator><rdf:Seq><rdf:li>secret-xmp-creator</rdf:li></rdf:Seq></dc:creator>"
    b"<photoshop:City>Springfield Secret Street</photoshop:City></rdf:Description></rdf:RDF></x:xmpmeta>"
    b'<?xpacket end="w"?>'
)


@dataclass(frozen=True)
class CorpusFile:
    """One upload of the corpus: what a client would call it, its bytes, and the verdict ingest owes it."""

    name: str
    data: bytes = field(repr=False)
    verdict: str
    """``accepted``, or the single reason code of the rejection."""
    what: str


def _portrait(side: int = 900) -> Image.Image:
    return astronaut().resize((side, side), _LANCZOS)


def _save(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    if image_format == "JPEG":
        options.setdefault("quality", 90)
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _insert_after_soi(jpeg: bytes, segment: bytes) -> bytes:
    return jpeg[:2] + segment + jpeg[2:]


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _exif_with_thumbnail(thumbnail: bytes) -> bytes:
    """An EXIF block (for APP1) whose IFD1 holds ``thumbnail``, a JPEG: what cameras and editors write,
    and a classic leak when an edit (a crop, a blur) left the old thumbnail behind."""
    make = b"Likeness Sample Camera\0"
    # Big-endian TIFF: header, IFD0 (Make, Orientation), IFD1 (Compression, thumbnail offset and length).
    ifd0_offset = 8
    ifd0_size = 2 + 2 * 12 + 4
    make_offset = ifd0_offset + ifd0_size
    ifd1_offset = make_offset + len(make)
    ifd1_size = 2 + 3 * 12 + 4
    thumbnail_offset = ifd1_offset + ifd1_size

    def entry(tag: int, kind: int, count: int, value: bytes) -> bytes:
        return struct.pack(">HHI", tag, kind, count) + value.ljust(4, b"\0")

    ifd0 = (
        struct.pack(">H", 2)
        + entry(0x010F, 2, len(make), struct.pack(">I", make_offset))
        + entry(0x0112, 3, 1, struct.pack(">H", 1))
        + struct.pack(">I", ifd1_offset)
    )
    ifd1 = (
        struct.pack(">H", 3)
        + entry(0x0103, 3, 1, struct.pack(">H", 6))
        + entry(0x0201, 4, 1, struct.pack(">I", thumbnail_offset))
        + entry(0x0202, 4, 1, struct.pack(">I", len(thumbnail)))
        + struct.pack(">I", 0)
    )
    tiff = b"MM\0\x2a" + struct.pack(">I", ifd0_offset) + ifd0 + make + ifd1 + thumbnail
    return b"Exif\0\0" + tiff


def _iptc_segment() -> bytes:
    """An APP13 Photoshop segment with IPTC-IIM records: by-line, city and caption."""

    def record(dataset: int, value: bytes) -> bytes:
        return struct.pack(">BBBH", 0x1C, 2, dataset, len(value)) + value

    iim = (
        record(0, b"\0\x04")
        + record(80, b"Jane Q. Secret")
        + record(90, b"Springfield Secret Street")
        + record(120, b"secret caption")
    )
    if len(iim) % 2:
        iim += b"\0"
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\0\0" + struct.pack(">I", len(iim)) + iim
    return _jpeg_segment(0xED, b"Photoshop 3.0\0" + resource)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_rgb16(image: Image.Image) -> bytes:
    """A 16-bit-per-channel RGB PNG (which Pillow cannot write) of an 8-bit RGB picture."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint16) * 257
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", image.width, image.height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows, 6))
        + _png_chunk(b"IEND", b"")
    )


def _png_declaring(width: int, height: int, image: Image.Image | None = None) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height``; its pixel data is ``image``'s (or a few bytes)."""
    if image is None:
        data = zlib.compress(b"\0" * 1024)
    else:
        rows = b"".join(b"\0" + row.tobytes() for row in np.asarray(image.convert("RGB"), dtype=np.uint8))
        data = zlib.compress(rows, 6)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def _jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with the frame header (SOF) claiming other dimensions than the coded data has."""
    offset = 2
    while offset + 9 < len(jpeg):
        marker = jpeg[offset + 1]
        (length,) = struct.unpack(">H", jpeg[offset + 2 : offset + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            return jpeg[: offset + 5] + struct.pack(">HH", height, width) + jpeg[offset + 9 :]
        offset += 2 + length
    raise ValueError("no frame header")


def _animation(image_format: str) -> bytes:
    frames = [_portrait(400), _portrait(400).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return _save(frames[0], image_format, save_all=True, append_images=frames[1:], duration=200, loop=0)


def _metadata_png() -> bytes:
    info = PngInfo()
    info.add_text("Author", "Jane Q. Secret")
    info.add_text("Comment", "secret comment", zip=True)  # a zTXt chunk
    info.add_itxt("XML:com.adobe.xmp", _XMP.decode())
    return _save(_portrait(), "PNG", pnginfo=info, exif=fake_exif(), compress_level=1)


def _corpus_builders() -> list[tuple[str, str, str, Callable[[], bytes]]]:
    """(name, verdict, what, build) for every file; built lazily so a test can take one by name."""
    portrait = _portrait
    secret_jpeg = {"exif": fake_exif(), "comment": b"secret comment"}
    return [
        # Metadata that gives a person away: must be accepted, and leave nothing behind.
        (
            "gps-and-camera.jpg",
            ACCEPTED,
            "EXIF with a GPS position, camera make and model, capture time and a JPEG comment",
            lambda: _save(portrait(), "JPEG", **secret_jpeg),
        ),
        (
            "edited-with-old-thumbnail.jpg",
            ACCEPTED,
            "an EXIF thumbnail (IFD1) showing a different picture than the photo",
            lambda: _save(
                portrait(),
                "JPEG",
                exif=_exif_with_thumbnail(_save(_thumbnail_of_another_picture(), "JPEG")),
            ),
        ),
        (
            "xmp-and-iptc.jpg",
            ACCEPTED,
            "an XMP packet (creator, city) and IPTC-IIM records (by-line, city, caption)",
            lambda: _insert_after_soi(_save(portrait(), "JPEG", xmp=_XMP), _iptc_segment()),
        ),
        (
            "icc-profile.jpg",
            ACCEPTED,
            "an embedded ICC colour profile",
            lambda: _save(portrait(), "JPEG", icc_profile=_srgb_icc()),
        ),
        (
            "text-chunks.png",
            ACCEPTED,
            "PNG tEXt, zTXt and iTXt (XMP) chunks and an eXIf chunk with GPS",
            _metadata_png,
        ),
        (
            "exif-and-xmp.webp",
            ACCEPTED,
            "a WebP with EXIF (GPS) and XMP chunks",
            lambda: _save(portrait(), "WEBP", quality=90, exif=fake_exif(), xmp=_XMP),
        ),
        (
            "phone.heic",
            ACCEPTED,
            "a HEIC, as phones write them, with EXIF (GPS)",
            lambda: _save(portrait(640), "HEIF", quality=85, exif=fake_exif()),
        ),
        (
            "trailing-payload.jpg",
            ACCEPTED,
            "bytes after the JPEG's end: a text and a second, smaller JPEG",
            lambda: _save(portrait(), "JPEG") + b"SECRET TRAILER after EOI\n" + _save(portrait(200), "JPEG"),
        ),
        (
            "trailing-payload.png",
            ACCEPTED,
            "bytes after the PNG's IEND chunk: a ZIP-like payload",
            lambda: _save(portrait(), "PNG", compress_level=1) + b"PK\x03\x04SECRET TRAILER after IEND",
        ),
        # Pixels stored in unusual ways: must be accepted, upright, in sRGB.
        (
            "sideways-with-orientation.jpg",
            ACCEPTED,
            "pixels stored turned by 90 degrees with EXIF orientation 6, as a phone held sideways writes",
            lambda: _save(
                portrait().transpose(Image.Transpose.ROTATE_90), "JPEG", exif=fake_exif(orientation=6)
            ),
        ),
        (
            "cmyk.jpg",
            ACCEPTED,
            "a CMYK JPEG (Adobe), as print workflows write them",
            lambda: _save(portrait().convert("CMYK"), "JPEG"),
        ),
        ("sixteen-bit.png", ACCEPTED, "a 16-bit-per-channel RGB PNG", lambda: _png_rgb16(portrait(640))),
        # Built to exhaust memory or time, or to confuse a decoder.
        (
            "bomb.png",
            "image_too_large",
            "a decompression bomb: a 60000x60000 PNG header over a few bytes of pixel data",
            lambda: _png_declaring(60_000, 60_000),
        ),
        (
            "bomb.jpg",
            "image_too_large",
            "a JPEG whose frame header claims 65000x65000 pixels",
            lambda: _jpeg_declaring(_save(portrait(), "JPEG"), 65_000, 65_000),
        ),
        (
            "lying-header.png",
            "corrupt_image",
            "a PNG header claiming 1800x1800 over the pixel data of a 900x900 photo",
            lambda: _png_declaring(1800, 1800, portrait()),
        ),
        (
            "lying-header.jpg",
            "no_face",
            "a JPEG frame header claiming 8000x6000 (48 MP, under the limit) over a 900x900 photo's data: "
            "libjpeg fills the missing blocks, the picture is gone",
            lambda: _jpeg_declaring(_save(portrait(), "JPEG"), 8000, 6000),
        ),
        (
            "truncated.jpg",
            "corrupt_image",
            "the first 60 % of a JPEG",
            lambda: (lambda data: data[: len(data) * 6 // 10])(_save(portrait(), "JPEG")),
        ),
        (
            "truncated.png",
            "corrupt_image",
            "the first half of a PNG",
            lambda: (lambda data: data[: len(data) // 2])(_save(portrait(), "PNG", compress_level=1)),
        ),
        # Not photos, whatever their name says.
        (
            "page.jpg",
            "unsupported_format",
            "an HTML page with a script",
            lambda: b"<!doctype html><script>alert(1)</script>",
        ),
        (
            "drawing.jpg",
            "unsupported_format",
            "an SVG with a script",
            lambda: (
                b'<svg xmlns="http://www.w3.org/2000/svg" width="900" height="900">'
                b"<script>alert(1)</script></svg>"
            ),
        ),
        (
            "document.jpg",
            "unsupported_format",
            "a PDF",
            lambda: b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n",
        ),
        (
            "archive.jpg",
            "unsupported_format",
            "a ZIP archive",
            lambda: b"PK\x03\x04" + bytes(26) + b"photo.jpg",
        ),
        (
            "program.jpg",
            "unsupported_format",
            "an ELF executable header",
            lambda: b"\x7fELF\x02\x01\x01" + bytes(57),
        ),
        ("notes.jpg", "unsupported_format", "plain text", lambda: b"just some text, not a photo\n" * 10),
        ("empty.jpg", "unsupported_format", "an empty file", lambda: b""),
        ("scan.jpg", "unsupported_format", "a TIFF", lambda: _save(portrait(), "TIFF")),
        ("bitmap.jpg", "unsupported_format", "a BMP", lambda: _save(portrait(), "BMP")),
        (
            "avif.jpg",
            "unsupported_format",
            "an AVIF (HEIF container, AV1 codec)",
            lambda: _save(portrait(), "AVIF"),
        ),
        # Animations.
        ("animation.gif", "unsupported_format", "an animated GIF", lambda: _animation("GIF")),
        ("animation.png", "unsupported_format", "an animated PNG (APNG)", lambda: _animation("PNG")),
        ("animation.webp", "unsupported_format", "an animated WebP", lambda: _animation("WEBP")),
        # Photos that cannot train a model of one person.
        ("landscape.jpg", "no_face", "no face at all (a cup of coffee)", no_face_photo),
        ("two-people.jpg", "multiple_faces", "two faces", two_faces_photo),
        ("tiny.jpg", "image_too_small", "a 64x64 thumbnail", lambda: _save(portrait(64), "JPEG")),
        ("pixel.png", "image_too_small", "a single pixel", lambda: _save(Image.new("RGB", (1, 1)), "PNG")),
        (
            "far-away.jpg",
            "face_too_small",
            "a face 6 % of the photo's side",
            lambda: _save(_on_wall(astronaut(), 1600), "JPEG"),
        ),
        (
            "blurry.jpg",
            "too_blurry",
            "out of focus (a 2 px Gaussian blur)",
            lambda: _save(portrait(1024).filter(ImageFilter.GaussianBlur(2)), "JPEG"),
        ),
        (
            "enlarged.jpg",
            "too_blurry",
            "a small photo enlarged four times",
            lambda: _save(portrait(256).resize((1024, 1024), Image.Resampling.BICUBIC), "JPEG"),
        ),
        (
            "dark.jpg",
            "too_dark",
            "three stops underexposed",
            lambda: _save(ImageEnhance.Brightness(portrait()).enhance(0.13), "JPEG"),
        ),
        (
            "washed-out.jpg",
            "overexposed",
            "overexposed until most of the face is white",
            lambda: _save(ImageEnhance.Brightness(portrait()).enhance(1.6), "JPEG"),
        ),
    ]


def _thumbnail_of_another_picture() -> Image.Image:
    """A 160x107 picture of a cup of coffee: what the photo showed before it was edited, say."""
    return Image.open(io.BytesIO(no_face_photo())).convert("RGB").resize((160, 107), _LANCZOS)


def _on_wall(image: Image.Image, side: int) -> Image.Image:
    wall = Image.new("RGB", (side, side), (200, 200, 205))
    wall.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return wall


def hostile_corpus_names() -> list[str]:
    """The corpus' file names, in order, without building any file."""
    return [name for name, _, _, _ in _corpus_builders()]


def hostile_corpus() -> list[CorpusFile]:
    """Every file of the hostile corpus with the verdict ingest must give it. Deterministic."""
    return [CorpusFile(name, build(), verdict, what) for name, verdict, what, build in _corpus_builders()]
