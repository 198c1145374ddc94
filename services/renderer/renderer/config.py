"""Renderer settings (both roles): base model, sampling budget, work-queue timing."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from likeness.config import CommonSettings


class RendererSettings(CommonSettings):
    service_name: str = "renderer"
    base_model: Path = Path(".likeness/models/tiny")
    #: Overrides every style's sampler steps when set (the tiny dev model needs only a few).
    inference_steps: int = 0
    ack_wait_seconds: float = 60.0
    max_deliver: int = 3
    max_images_per_style: int = 8
    max_styles: int = 16


@lru_cache(maxsize=1)
def get_settings() -> RendererSettings:
    return RendererSettings()
