"""What sanitizing a photo can conclude: an accepted training crop, or reasons a person can act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from ingest.faces import FaceBox
from ingest.limits import DEFAULT_LIMITS, SanitizeLimits


class ReasonCode(StrEnum):
    """Stable machine codes; clients switch on these, so never rename one."""

    FILE_TOO_LARGE = "file_too_large"
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT_IMAGE = "corrupt_image"
    IMAGE_TOO_LARGE = "image_too_large"
    IMAGE_TOO_SMALL = "image_too_small"
    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    FACE_TOO_SMALL = "face_too_small"


# Templates filled from the limits in force, so the numbers a person reads are the ones we applied.
MESSAGES: dict[ReasonCode, str] = {
    ReasonCode.FILE_TOO_LARGE: "This file is too large. Upload a photo of at most {max_mb} MB.",
    ReasonCode.UNSUPPORTED_FORMAT: (
        "We can't read this kind of file. Upload a still photo in JPEG, PNG, WebP or HEIC format."
    ),
    ReasonCode.CORRUPT_IMAGE: (
        "This photo seems to be damaged or incomplete. Try exporting it again, or choose another photo."
    ),
    ReasonCode.IMAGE_TOO_LARGE: (
        "This photo has too many pixels. Upload a photo of at most {max_megapixels} megapixels."
    ),
    ReasonCode.IMAGE_TOO_SMALL: (
        "This photo is too small. Upload a photo that is at least {min_side} pixels on its shorter side."
    ),
    ReasonCode.NO_FACE: (
        "We couldn't find a face in this photo. Use a photo where your face is clearly visible."
    ),
    ReasonCode.MULTIPLE_FACES: (
        "We found more than one face in this photo. Use a photo where only you are in the picture."
    ),
    ReasonCode.FACE_TOO_SMALL: (
        "Your face is too small in this photo. Use a photo taken closer, with your head and shoulders "
        "filling more of the picture."
    ),
}


@dataclass(frozen=True)
class Reason:
    code: ReasonCode
    message: str

    @classmethod
    def of(cls, code: ReasonCode, limits: SanitizeLimits = DEFAULT_LIMITS) -> Reason:
        message = MESSAGES[code].format(
            max_mb=_tidy(limits.max_bytes / (1024 * 1024)),
            max_megapixels=_tidy(limits.max_pixels / 1_000_000),
            min_side=limits.min_side,
        )
        return cls(code=code, message=message)


def _tidy(value: float) -> str:
    """25.0 -> "25", 12.5 -> "12.5": numbers as a person would write them."""
    return f"{value:.1f}".removesuffix(".0")


class RejectedInput(Exception):
    """Raised inside the pipeline when the input is unusable; sanitize() turns it into a Rejected verdict.

    The detail is for developers (tests, debugging) and never contains image content.
    """

    def __init__(self, code: ReasonCode, detail: str = "") -> None:
        super().__init__(f"{code.value}: {detail}" if detail else code.value)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Accepted:
    """A usable photo: a clean PNG crop plus what we learned about the face.

    ``png`` and ``embedding`` are personal data: they are left out of repr() so they never reach a log by
    accident. The caller encrypts both before they leave the process.
    """

    png: bytes = field(repr=False)
    width: int
    height: int
    face_box: FaceBox
    """Face box in the (orientation-corrected) source photo's pixel coordinates."""
    face_score: float
    face_fraction: float
    """Face box side over the source photo's shorter side."""
    embedding: tuple[float, ...] = field(repr=False)
    """128-D dlib identity embedding; faces of one person lie within a Euclidean distance of about 0.6."""
    source_format: str
    source_width: int
    source_height: int
    accepted: Literal[True] = True


@dataclass(frozen=True)
class Rejected:
    """An unusable photo, with one reason per problem found (currently the first problem stops the checks)."""

    reasons: list[Reason]
    accepted: Literal[False] = False

    @property
    def codes(self) -> list[ReasonCode]:
        return [reason.code for reason in self.reasons]


SanitizeResult = Accepted | Rejected


def rejected(code: ReasonCode, limits: SanitizeLimits = DEFAULT_LIMITS) -> Rejected:
    return Rejected(reasons=[Reason.of(code, limits)])
