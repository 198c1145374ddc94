"""Sample photos of a real face for demos and tests, made offline from scikit-image's astronaut picture.

``skimage.data.astronaut()`` is NASA's portrait of astronaut Eileen Collins (public domain), 512x512 RGB.
Each sample is a different crop, scale, mirror, slight rotation or exposure of it, saved as JPEG, PNG or
WebP like a phone or an editor would: some JPEGs are stored sideways or upside down with an EXIF
orientation tag, and most carry an invented GPS position, camera make and capture time, so the
metadata stripping and orientation handling of ingest are exercised by every demo upload.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageCms, ImageEnhance

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


def _rotate_and_trim(image: Image.Image, degrees: float, trim: int) -> Image.Image:
    turned = image.rotate(degrees, resample=Image.Resampling.BICUBIC)
    return turned.crop((trim, trim, image.width - trim, image.height - trim))


def _tint(image: Image.Image, red: float, blue: float) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32) * np.array([red, 1.0, blue], dtype=np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))


_LANCZOS = Image.Resampling.LANCZOS

# Every recipe keeps the face whole, at least 256 px on the shorter side, and clear of the rotations
# at which dlib's HOG detector weakens; test_cli_samples checks that ingest accepts each one.
_RECIPES: tuple[_Recipe, ...] = (
    _Recipe("jpg", lambda im: im.resize((1024, 1024), _LANCZOS)),
    _Recipe("jpg", lambda im: im.resize((900, 900), _LANCZOS), orientation=6),
    _Recipe("png", lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((768, 768), _LANCZOS)),
    _Recipe(
        "webp",
        lambda im: (
            ImageEnhance.Brightness(_rotate_and_trim(im, 4, 24)).enhance(1.08).resize((928, 928), _LANCZOS)
        ),
    ),
    _Recipe(
        "jpg",
        lambda im: (
            ImageEnhance.Brightness(im.crop((48, 0, 464, 512))).enhance(0.88).resize((832, 1024), _LANCZOS)
        ),
        orientation=3,
    ),
    _Recipe(
        "jpg",
        lambda im: _tint(im.crop((0, 16, 480, 496)), 1.05, 0.93).resize((720, 720), _LANCZOS),
        orientation=8,
    ),
    _Recipe("png", lambda im: im.crop((0, 48, 512, 432)).resize((1024, 768), _LANCZOS), with_metadata=False),
    _Recipe(
        "jpg",
        lambda im: ImageEnhance.Color(_rotate_and_trim(im, -3, 16)).enhance(0.6).resize((600, 600), _LANCZOS),
    ),
)


def sample_photos(count: int = 6) -> list[tuple[str, bytes]]:
    """``count`` sample uploads as (file name, file bytes), e.g. ``("astronaut-01.jpg", b"...")``.

    The first eight are all different framings; later ones repeat them with a slightly different exposure.
    Every sample is accepted by ingest's ``sanitize`` with its default limits. Deterministic.
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
