"""What sanitizing a photo can conclude: an accepted training crop, or reasons a person can act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ingest.faces import FaceBox
from ingest.limits import DEFAULT_LIMITS, DEFAULT_RULES, SanitizeLimits, SubjectRules
from ingest.phash import PhotoHash
from ingest.reasons import ReasonCode, RejectedInput

__all__ = [
    "MESSAGES",
    "Accepted",
    "Reason",
    "ReasonCode",
    "Rejected",
    "RejectedInput",
    "SanitizeResult",
    "rejected",
]


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
    ReasonCode.TOO_BLURRY: (
        "Your face is not sharp enough in this photo. Use a photo in focus, taken closer and held still, "
        "not an enlarged copy."
    ),
    ReasonCode.TOO_DARK: "Your face is too dark in this photo. Use a photo taken in better light.",
    ReasonCode.OVEREXPOSED: (
        "Your face is too bright in this photo: parts of it are washed out. Use a photo without strong "
        "direct light or flash on your face."
    ),
    ReasonCode.TOO_MANY_PHOTOS: (
        "You already have the most photos we keep for one person ({max_photos}). No more are needed."
    ),
    ReasonCode.DUPLICATE: (
        "This is the same picture as one of your earlier photos. Use a different photo of yourself."
    ),
    ReasonCode.DIFFERENT_PERSON: (
        "This photo seems to show someone else than your other photos. Use photos of yourself only."
    ),
}


@dataclass(frozen=True)
class Reason:
    code: ReasonCode
    message: str

    @classmethod
    def of(
        cls, code: ReasonCode, limits: SanitizeLimits = DEFAULT_LIMITS, rules: SubjectRules = DEFAULT_RULES
    ) -> Reason:
        message = MESSAGES[code].format(
            max_mb=_tidy(limits.max_bytes / (1024 * 1024)),
            max_megapixels=_tidy(limits.max_pixels / 1_000_000),
            min_side=limits.min_side,
            max_photos=rules.max_photos,
        )
        return cls(code=code, message=message)


def _tidy(value: float) -> str:
    """25.0 -> "25", 12.5 -> "12.5": numbers as a person would write them."""
    return f"{value:.1f}".removesuffix(".0")


@dataclass(frozen=True)
class Accepted:
    """A usable photo: a clean PNG crop plus what we learned about the face.

    ``png``, ``embedding`` and ``perceptual_hash`` are personal data: they are left out of repr() so they
    never reach a log by accident. The caller encrypts them before they leave the process.
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
    perceptual_hash: PhotoHash = field(repr=False)
    """DCT hash of the whole upright photo and its mirror image (see :mod:`ingest.phash`), to find the
    same picture again."""
    source_format: str
    source_width: int
    source_height: int
    scores: dict[str, float] = field(default_factory=dict)
    """Quality scores for the verdict (``Photo.scores``): never biometric."""
    accepted: Literal[True] = True


@dataclass(frozen=True)
class Rejected:
    """An unusable photo, with one reason per problem found and the scores measured before it stopped.

    Decoding and face problems stop the checks at the first one; the quality checks (sharpness,
    exposure) all run, so a person learns everything to fix at once.
    """

    reasons: list[Reason]
    scores: dict[str, float] = field(default_factory=dict)
    accepted: Literal[False] = False

    @property
    def codes(self) -> list[ReasonCode]:
        return [reason.code for reason in self.reasons]


SanitizeResult = Accepted | Rejected


def rejected(
    code: ReasonCode,
    limits: SanitizeLimits = DEFAULT_LIMITS,
    rules: SubjectRules = DEFAULT_RULES,
) -> Rejected:
    return Rejected(reasons=[Reason.of(code, limits, rules)])
