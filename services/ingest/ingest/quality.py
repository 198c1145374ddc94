"""Is the face sharp and well exposed? Measured on the face itself, the same way for any photo size.

Sharpness is the variance of the Laplacian (the classic focus measure), taken on the middle of the face
box resampled to a fixed 128 px square: a face that was enlarged, shaken or out of focus has little
energy at the finest scale there, however large the photo. It is divided by the variance of the pixels,
so a low-contrast (dark, hazy) face is not mistaken for a blurred one; the ratio is about 0.05-0.15 for
sharp photos. Exposure is read from the same region as luma (Rec. 709 weights on the sRGB values): its
mean, and the share of pixels blown out to white.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ingest.faces import FaceBox
from ingest.limits import SanitizeLimits
from ingest.verdicts import ReasonCode

# The middle of the face box (brow to mouth, cheek to cheek): detector boxes include some background at
# the sides, which would add the background's edges or flatness to a measure of the face.
_FACE_REGION = 0.8
_SHARPNESS_SIDE = 128
_EXPOSURE_SIDE = 64
_CLIPPED_LUMA = 250 / 255
_REC709 = np.array([0.2126, 0.7152, 0.0722], dtype=np.float64)
#: The face box side at which the measured region has its full 128 px: smaller faces are enlarged for the
#: measure (and score as less sharp, rightly: the crop would enlarge them too).
MIN_MEASURED_FACE_SIDE = math.ceil(_SHARPNESS_SIDE / _FACE_REGION)


@dataclass(frozen=True)
class FaceQuality:
    sharpness: float
    brightness: float
    """Mean luma of the face, 0 (black) to 1 (white)."""
    clipped: float
    """Share of the face's pixels at or near pure white."""

    def scores(self) -> dict[str, float]:
        """What the verdict carries, rounded: enough to coach a person, nothing more."""
        return {
            "sharpness": round(self.sharpness, 3),
            "face_brightness": round(self.brightness, 3),
            "face_clipped": round(self.clipped, 3),
        }


def measure_face(image: Image.Image, face: FaceBox) -> FaceQuality:
    """Sharpness and exposure of ``face`` in ``image`` (RGB)."""
    cx, cy = face.centre
    half = max(face.side * _FACE_REGION / 2, 1.0)
    region = (cx - half, cy - half, cx + half, cy + half)

    # Resampled first, then made grey: only the region's pixels are ever copied.
    sample = image.resize((_SHARPNESS_SIDE, _SHARPNESS_SIDE), Image.Resampling.BILINEAR, box=region)
    pixels = np.asarray(sample.convert("L"), dtype=np.float64) / 255.0
    laplacian = (
        pixels[1:-1, :-2] + pixels[1:-1, 2:] + pixels[:-2, 1:-1] + pixels[2:, 1:-1] - 4.0 * pixels[1:-1, 1:-1]
    )
    contrast = float(pixels.var())
    sharpness = float(laplacian.var()) / contrast if contrast > 1e-6 else 0.0

    colour = image.resize((_EXPOSURE_SIDE, _EXPOSURE_SIDE), Image.Resampling.BOX, box=region)
    luma = (np.asarray(colour.convert("RGB"), dtype=np.float64) / 255.0) @ _REC709
    return FaceQuality(
        sharpness=sharpness,
        brightness=float(luma.mean()),
        clipped=float((luma >= _CLIPPED_LUMA).mean()),
    )


def quality_problems(quality: FaceQuality, limits: SanitizeLimits) -> list[ReasonCode]:
    """Every quality check the face fails, in a fixed order; empty when it passes them all."""
    problems = []
    if quality.sharpness < limits.min_sharpness:
        problems.append(ReasonCode.TOO_BLURRY)
    if quality.brightness < limits.min_face_brightness:
        problems.append(ReasonCode.TOO_DARK)
    if quality.clipped > limits.max_face_clipped:
        problems.append(ReasonCode.OVEREXPOSED)
    return problems
