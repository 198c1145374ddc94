"""Ingest settings: the sanitization limits, the per-subject rules (documented defaults) and concurrency."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from ingest.limits import SanitizeLimits, SubjectRules
from likeness.config import CommonSettings


class IngestSettings(CommonSettings):
    service_name: str = "ingest"
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_pixels: int = Field(default=50_000_000, gt=0)
    min_side: int = Field(default=256, gt=0)
    min_face_fraction: float = 0.1
    min_sharpness: float = 0.03
    min_face_brightness: float = 0.15
    max_face_clipped: float = 0.3
    crop_size: int = Field(default=512, gt=0)

    #: Accepted photos one subject may have; uploads past it are refused with `too_many_photos`.
    max_photos_per_subject: int = 30
    #: Perceptual-hash bits (of 64) within which a photo is the same picture as one already accepted.
    max_duplicate_distance: int = 10
    #: dlib distance from the consensus of the subject's accepted faces beyond which it is someone else.
    max_identity_distance: float = 0.6

    #: Photos sanitized at once per process; bounds CPU and memory (each holds at most one decoded image).
    max_concurrent: int = Field(default=2, gt=0)
    #: Uploads received at once per process (each buffers at most max_upload_bytes in memory); later
    #: ones wait, so a burst of uploads cannot hold more than this many files in memory.
    max_concurrent_uploads: int = Field(default=8, gt=0)

    def limits(self) -> SanitizeLimits:
        return SanitizeLimits(
            max_bytes=self.max_upload_bytes,
            max_pixels=self.max_pixels,
            min_side=self.min_side,
            min_face_fraction=self.min_face_fraction,
            min_sharpness=self.min_sharpness,
            min_face_brightness=self.min_face_brightness,
            max_face_clipped=self.max_face_clipped,
            crop_size=self.crop_size,
        )

    def subject_rules(self) -> SubjectRules:
        return SubjectRules(
            max_photos=self.max_photos_per_subject,
            max_duplicate_distance=self.max_duplicate_distance,
            max_identity_distance=self.max_identity_distance,
        )


@lru_cache(maxsize=1)
def get_settings() -> IngestSettings:
    return IngestSettings()
