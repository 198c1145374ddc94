"""Face quality measures and the perceptual hash, on pictures whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from ingest.faces import FaceBox
from ingest.limits import SanitizeLimits
from ingest.phash import HASH_BITS, hamming, perceptual_hash
from ingest.quality import FaceQuality, measure_face, quality_problems
from ingest.verdicts import ReasonCode
from likeness_dev.samples import astronaut

FACE = FaceBox(left=175, top=76, right=266, bottom=167, score=1.0)  # the astronaut's, at 512 px


def _texture(side: int = 512, seed: int = 3) -> Image.Image:
    """Fine random detail, mid-grey on average: sharp by any measure."""
    noise = np.random.default_rng(seed).integers(60, 196, (side, side, 3), dtype=np.uint8)
    return Image.fromarray(noise)


def test_sharpness_falls_with_blur_and_ignores_size() -> None:
    portrait = astronaut()
    sharp = measure_face(portrait, FACE).sharpness
    blurred = measure_face(portrait.filter(ImageFilter.GaussianBlur(2)), FACE).sharpness
    assert sharp > 3 * blurred
    # The same face at twice the size measures about the same: the face region is resampled to 128 px.
    doubled = portrait.resize((1024, 1024), Image.Resampling.LANCZOS)
    big_face = FaceBox(left=350, top=152, right=532, bottom=334, score=1.0)
    assert measure_face(doubled, big_face).sharpness == pytest.approx(sharp, rel=0.35)


def test_sharpness_does_not_depend_on_contrast() -> None:
    texture = _texture()
    box = FaceBox(left=100, top=100, right=400, bottom=400, score=1.0)
    full = measure_face(texture, box).sharpness
    low_contrast = measure_face(ImageEnhance.Contrast(texture).enhance(0.5), box).sharpness
    assert low_contrast == pytest.approx(full, rel=0.15)


def test_a_flat_face_has_no_sharpness() -> None:
    flat = Image.new("RGB", (300, 300), (120, 110, 100))
    assert measure_face(flat, FaceBox(50, 50, 250, 250, 1.0)).sharpness == 0.0


@pytest.mark.parametrize(
    ("colour", "brightness", "clipped"),
    [((0, 0, 0), 0.0, 0.0), ((255, 255, 255), 1.0, 1.0), ((128,) * 3, 0.502, 0.0)],
)
def test_brightness_and_clipping_are_read_from_the_face(
    colour: tuple[int, int, int], brightness: float, clipped: float
) -> None:
    # The face region is white, black or grey; the rest of the photo is the opposite and must not count.
    photo = Image.new("RGB", (400, 400), tuple(255 - c for c in colour))
    photo.paste(colour, (100, 100, 300, 300))
    quality = measure_face(photo, FaceBox(100, 100, 300, 300, 1.0))
    assert quality.brightness == pytest.approx(brightness, abs=0.01)
    assert quality.clipped == pytest.approx(clipped, abs=0.01)


def test_quality_problems_in_a_fixed_order() -> None:
    limits = SanitizeLimits()
    assert quality_problems(FaceQuality(sharpness=0.1, brightness=0.5, clipped=0.0), limits) == []
    assert quality_problems(FaceQuality(sharpness=0.01, brightness=0.05, clipped=0.0), limits) == [
        ReasonCode.TOO_BLURRY,
        ReasonCode.TOO_DARK,
    ]
    assert quality_problems(FaceQuality(sharpness=0.1, brightness=0.9, clipped=0.5), limits) == [
        ReasonCode.OVEREXPOSED
    ]
    assert FaceQuality(sharpness=0.12345, brightness=0.5, clipped=0.0).scores()["sharpness"] == 0.123


def test_quality_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="min_face_brightness"):
        SanitizeLimits(min_face_brightness=1.5)
    with pytest.raises(ValueError, match="min_sharpness"):
        SanitizeLimits(min_sharpness=-1)


# --- the perceptual hash ---------------------------------------------------------------------------------


def test_the_hash_survives_what_a_re_upload_does_to_a_photo() -> None:
    photo = astronaut().resize((900, 900))
    original = perceptual_hash(photo)
    variants = {
        "smaller": photo.resize((300, 300)),
        "greyscale": photo.convert("L"),
        "brighter": ImageEnhance.Brightness(photo).enhance(1.15),
        "cropped 3 %": photo.crop((27, 27, 873, 873)),
        "mirrored": photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    }
    for name, variant in variants.items():
        assert original.distance(perceptual_hash(variant).value) <= 8, name


def test_the_hash_tells_other_framings_and_pictures_apart() -> None:
    portrait = astronaut()
    original = perceptual_hash(portrait)
    others = {
        "another framing": portrait.crop((110, 0, 512, 300)),
        "noise": _texture(),
        "upside down": portrait.transpose(Image.Transpose.ROTATE_180),
    }
    for name, other in others.items():
        assert original.distance(perceptual_hash(other).value) > 16, name


def test_the_mirror_hash_is_the_hash_of_the_mirror_image() -> None:
    portrait = astronaut()
    assert (
        perceptual_hash(portrait).mirrored
        == perceptual_hash(portrait.transpose(Image.Transpose.FLIP_LEFT_RIGHT)).value
    )
    value = perceptual_hash(portrait).value
    assert 0 <= value < 2**HASH_BITS
    assert hamming(value, value ^ 0b1011) == 3
