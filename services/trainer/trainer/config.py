"""Trainer settings (both roles): the base model, the work queue's timing, progress cadence."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field

from likeness.config import JobQueueSettings
from likeness_ml.pipeline_layout import SHA256_OR_EMPTY


class TrainerSettings(JobQueueSettings):
    service_name: str = "trainer"
    #: Directory of the base Stable Diffusion pipeline (diffusers layout), loaded once per worker.
    base_model: Path = Path(".likeness/models/tiny")
    #: SHA-256 of the base model's `likeness-manifest.json` (printed by `likeness model manifest`): the
    #: worker refuses weights whose manifest is not this one. Required in production.
    base_model_manifest_sha256: str = Field(default="", pattern=SHA256_OR_EMPTY)
    #: Progress events at most this often (every step would flood the bus on a fast GPU).
    progress_interval_seconds: float = 1.0
    max_steps: int = 10_000
    #: Encrypted checkpoint every this many steps (0: the base family's preset); a redelivered job resumes
    #: from the newest one.
    checkpoint_every_steps: int = Field(default=0, ge=0)
    #: Checkpoints kept per training while it runs (older ones are deleted with all their versions; all
    #: are deleted when the training ends).
    checkpoints_kept: int = Field(default=2, ge=1)
    #: DreamBooth prior preservation: class images generated once by the base model at worker start,
    #: trained on next to the subject's photos (doubles the cost of a step).
    prior_preservation: bool = False
    #: Text-encoder LoRA beside the UNet's (every encoder of the base model: SDXL's two). Off by default:
    #: the prompt is re-encoded every step, and the LoRA would also bend how the catalog's words are read.
    train_text_encoder: bool = False


@lru_cache(maxsize=1)
def get_settings() -> TrainerSettings:
    return TrainerSettings()
