"""The aligned crop, on synthetic pictures whose every pixel says where it came from."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from ingest.crop import aligned_face_crop
from ingest.faces import FaceLandmarks


def _landmarks(
    eye_left: tuple[float, float], eye_right: tuple[float, float], nose_drop: float
) -> FaceLandmarks:
    """dlib-ordered points for eyes at the given centres and the nose ``nose_drop`` px below their middle."""
    (lx, ly), (rx, ry) = eye_left, eye_right
    angle = math.atan2(ry - ly, rx - lx)
    nose = ((lx + rx) / 2 - math.sin(angle) * nose_drop, (ly + ry) / 2 + math.cos(angle) * nose_drop)
    return FaceLandmarks(points=((rx + 8, ry), (rx - 8, ry), (lx - 8, ly), (lx + 8, ly), nose))


def _position_image(width: int, height: int) -> Image.Image:
    """Red encodes x, green encodes y (0-255 across the image)."""
    xs = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, axis=0)
    ys = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, axis=1)
    pixels = np.stack([xs, ys, np.zeros_like(xs)], axis=-1).round().astype(np.uint8)
    return Image.fromarray(pixels)


def test_crop_is_centred_below_the_eyes_at_the_requested_scale() -> None:
    image = _position_image(3000, 2000)
    landmarks = _landmarks((1000 - 0.5, 800 - 0.5), (1100 - 0.5, 800 - 0.5), nose_drop=60)
    crop = aligned_face_crop(image, landmarks, size=512, face_fraction=0.45)
    assert crop.size == (512, 512)
    # Face 2.2 x eye distance = 220 px, crop side 220 / 0.45 = 489 px; centre 0.2 face + 0.03 side below
    # the eyes.
    red, green, _ = crop.getpixel((256, 256))  # type: ignore[misc]
    assert red == pytest.approx(1050 / 3000 * 255, abs=1.5)
    assert green == pytest.approx((800 + 44 + 0.03 * 489) / 2000 * 255, abs=1.5)
    left_red = crop.getpixel((0, 256))[0]  # type: ignore[index]
    assert left_red == pytest.approx((1050 - 489 / 2) / 3000 * 255, abs=2)


def test_crop_turns_a_tilted_face_level() -> None:
    size, angle = 1600, math.radians(25)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Stripes parallel to the eye line: after levelling, every row of the crop is one shade.
    across = (xx - 800) * -math.sin(angle) + (yy - 800) * math.cos(angle)
    stripes = (128 + 100 * np.sin(2 * math.pi * across / 60)).astype(np.uint8)
    image = Image.fromarray(np.stack([stripes] * 3, axis=-1))
    half = 60
    landmarks = _landmarks(
        (800 - half * math.cos(angle), 800 - half * math.sin(angle)),
        (800 + half * math.cos(angle), 800 + half * math.sin(angle)),
        nose_drop=70,
    )
    crop = np.asarray(
        aligned_face_crop(image, landmarks, size=256, face_fraction=0.45).convert("L"), dtype=np.float32
    )
    assert crop.std(axis=0).mean() > 30  # stripes are there, across the rows
    assert crop[:, 8:-8].std(axis=1).max() < 6  # and each row is level


def test_crop_near_the_border_is_moved_inside_not_padded() -> None:
    image = Image.new("RGB", (1200, 900), (200, 30, 30))
    # Eyes 30 px from the top-left corner: the ideal window would reach far outside the photo.
    crop = aligned_face_crop(
        image, _landmarks((30, 30), (130, 40), nose_drop=60), size=512, face_fraction=0.45
    )
    pixels = np.asarray(crop)
    assert crop.size == (512, 512)
    assert (np.abs(pixels.astype(int) - [200, 30, 30]).max(axis=-1) <= 2).all(), "no fill colour in the crop"


def test_a_face_larger_than_the_photo_allows_uses_the_whole_shorter_side() -> None:
    image = _position_image(400, 300)
    crop = aligned_face_crop(
        image, _landmarks((150, 120), (250, 120), nose_drop=60), size=512, face_fraction=0.45
    )
    assert crop.size == (512, 512)
    top = crop.getpixel((256, 0))[1]  # type: ignore[index]
    bottom = crop.getpixel((256, 511))[1]  # type: ignore[index]
    assert top <= 3
    assert bottom >= 250
