"""Ingest settings: the sanitization limits (documented defaults) and concurrency."""

from __future__ import annotations

from functools import lru_cache

from ingest.limits import SanitizeLimits
from likeness.config import CommonSettings


class IngestSettings(CommonSettings):
    service_name: str = "ingest"
    max_upload_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 50_000_000
    min_side: int = 256
    min_face_fraction: float = 0.1
    crop_size: int = 512
    #: Photos sanitized at once per process; bounds memory (each holds at most one decoded image).
    max_concurrent: int = 2

    def limits(self) -> SanitizeLimits:
        return SanitizeLimits(
            max_bytes=self.max_upload_bytes,
            max_pixels=self.max_pixels,
            min_side=self.min_side,
            min_face_fraction=self.min_face_fraction,
            crop_size=self.crop_size,
        )


@lru_cache(maxsize=1)
def get_settings() -> IngestSettings:
    return IngestSettings()
