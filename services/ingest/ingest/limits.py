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
        When that finds no face, a slower pass looks for faces down to half that size, so a small face
        is reported as too small rather than missing.
    min_proposal_score: HOG detector score a detection needs to be considered at all (0.0, dlib's own
        default). Clear frontal faces score about 0.3-2; so do some clothing patches and patterns,
        which is why each proposal is confirmed.
    min_face_confidence: CNN detector confidence that confirms a proposal as a face (0.3). Real faces
        score about 0.7-1.1 there; HOG's false proposals get no CNN detection at all.
    max_face_proposals: at most this many proposals are confirmed per photo (6, about 0.1 s each), which
        bounds the time a photo full of face-like patterns can cost.
    min_face_fraction: smallest face accepted, as the face box side over the photo's shorter side (0.1)
        -> ``face_too_small``. Smaller faces elsewhere in the photo (bystanders) are ignored.
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
    min_face_fraction: float = 0.1
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


DEFAULT_LIMITS = SanitizeLimits()
