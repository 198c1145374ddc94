"""The numbers that decide whether an uploaded photo is usable, in one frozen value."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SanitizeLimits:
    """Limits applied by :func:`ingest.sanitize.sanitize`, checked in this order (defaults in brackets).

    max_bytes: largest upload accepted (25 MiB); checked before anything is parsed -> ``file_too_large``.
    max_pixels: largest declared width x height (50 MP); read from the header before any pixel is
        decoded -> ``image_too_large``. Pillow's own decompression-bomb guard stays on as a second line.
    min_side: smallest accepted shorter side in pixels (256) -> ``image_too_small``.
    detection_max_pixels: faces are searched on a reduced copy of at most this many pixels (2 MP),
        scaled so that a face of ``min_face_fraction`` is just large enough for dlib's HOG detector
        (about 900 px on the shorter side at the defaults); boxes are mapped back to full resolution.
        JPEGs are decoded straight at about that size (libjpeg's DCT scaling, 1/2 to 1/8), and again
        at a larger scale only when the face found is too small in it for the crop.
        When that finds no face, a slower pass looks for faces down to half that size, so a small face
        is reported as too small rather than missing.
    min_proposal_score: HOG detector score a detection needs to be considered at all (0.0, dlib's own
        default). Clear frontal faces score about 0.3-2; so do some clothing patches and patterns,
        which is why each proposal is confirmed.
    min_face_confidence: CNN detector confidence that confirms a proposal as a face (0.3). Real faces
        score about 0.7-1.1 there; HOG's false proposals get no CNN detection at all.
    max_face_proposals: at most this many proposals are confirmed per photo (6, 0.06-0.2 s each), which
        bounds the time a photo full of face-like patterns can cost.
    min_second_face_score: once one face is confirmed, other proposals are looked at only from this HOG
        score up (0.3). Clear faces score 0.4-2; HOG's false proposals on clothing and backdrops mostly
        under 0.2, and each costs a CNN look. A second person so unclear that HOG scores them lower is
        not counted (their face would not be in the crop's centre anyway).
    min_face_fraction: smallest face accepted, as the face box side over the photo's shorter side (0.1)
        -> ``face_too_small``. Smaller faces elsewhere in the photo (bystanders) are ignored.
    min_sharpness: smallest sharpness of the face (0.03) -> ``too_blurry``. Sharpness is the variance of
        the Laplacian over the variance of the pixels, on the middle of the face resampled to 128 px
        (see :mod:`ingest.quality`): independent of the photo's size and of its contrast. Sharp photos
        score about 0.05-0.15; a 1 MP portrait blurred by a 1 px Gaussian 0.037, by 1.5 px 0.015; a
        face enlarged 3.4x 0.028.
    min_face_brightness: smallest mean luma (0-1, sRGB) of the face (0.15) -> ``too_dark``. Kept low on
        purpose: a well-lit face of very dark skin has a mean luma of about 0.25-0.4, and must pass.
    max_face_clipped: largest share of the face's pixels that are blown out to white (0.3)
        -> ``overexposed``. Clipped detail is gone; a dark but unclipped face still has it.
    crop_size: side of the square training crop written out (512 px).
    crop_face_fraction: share of the crop's side taken by the face box (0.45), which leaves room for the
        hair above and the shoulders below: a head-and-shoulders framing.
    """

    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 50_000_000
    min_side: int = 256
    detection_max_pixels: int = 2_000_000
    min_proposal_score: float = 0.0
    min_face_confidence: float = 0.3
    max_face_proposals: int = 6
    min_second_face_score: float = 0.3
    min_face_fraction: float = 0.1
    min_sharpness: float = 0.03
    min_face_brightness: float = 0.15
    max_face_clipped: float = 0.3
    crop_size: int = 512
    crop_face_fraction: float = 0.45

    def __post_init__(self) -> None:
        for name in (
            "max_bytes",
            "max_pixels",
            "min_side",
            "detection_max_pixels",
            "crop_size",
            "max_face_proposals",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0.0 <= self.min_face_fraction < 1.0:
            raise ValueError("min_face_fraction must be in [0, 1)")
        if not 0.0 < self.crop_face_fraction <= 1.0:
            raise ValueError("crop_face_fraction must be in (0, 1]")
        if self.min_side * self.min_side > self.max_pixels:
            raise ValueError("min_side squared must not exceed max_pixels")
        if self.min_sharpness < 0:
            raise ValueError("min_sharpness must not be negative")
        for name in ("min_face_brightness", "max_face_clipped"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")


DEFAULT_LIMITS = SanitizeLimits()


@dataclass(frozen=True)
class SubjectRules:
    """Rules over all of one subject's photos, applied by the service with the subject's templates.

    max_photos: accepted photos a subject may have (30) -> ``too_many_photos``. LoRA training wants
        10-20 good photos; more only adds biometric data we would have to hold.
    max_duplicate_distance: a photo whose 64-bit perceptual hash is within this many bits (10) of one
        the subject already has, or of its mirror image, is the same picture again -> ``duplicate``.
        Re-encoding, resizing, recolouring or a 3 % crop moves a hash by 0-8 bits; another framing of
        the same scene by 20 or more.
    max_identity_distance: a face farther than this (0.6, dlib's own threshold for "same person") from
        the consensus (element-wise median) of the subject's accepted embeddings -> ``different_person``.
    """

    max_photos: int = 30
    max_duplicate_distance: int = 10
    max_identity_distance: float = 0.6

    def __post_init__(self) -> None:
        if self.max_photos <= 0:
            raise ValueError("max_photos must be positive")
        if not 0 <= self.max_duplicate_distance < 64:
            raise ValueError("max_duplicate_distance must be in [0, 64)")
        if self.max_identity_distance <= 0:
            raise ValueError("max_identity_distance must be positive")


DEFAULT_RULES = SubjectRules()
