"""Training configuration and the per-base-model presets it is normally taken from.

The numbers follow what works for DreamBooth-LoRA portraits with diffusers' ``train_dreambooth_lora.py``
recipe: LR 1e-4 with AdamW, rank 16-32, ~100 training samples (steps x batch) per photo with a floor (few
photos still need enough steps to bind the identity) and a ceiling (beyond it the LoRA overfits: same
pose/expression everywhere).

SD 1.x/2.x train two samples per step: at 512-768 px a single-sample step leaves a data-center GPU mostly
waiting on kernel launches, so a second sample costs far less than a second step, and the same samples
per photo take about half the steps. (It also amortises the per-step work that does not grow with the
batch; `bench/gpu_trainer.sh --batch-size 1` against the default shows the difference on a GPU.)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from likeness_ml.base_model import BaseFamily
from likeness_ml.subject import INSTANCE_PROMPT, SUBJECT_PHRASE


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    rank: int
    alpha: float
    learning_rate: float
    base_family: BaseFamily
    resolution: int | None = None  # None: the pipeline's native resolution
    seed: int = 0
    subject_phrase: str = SUBJECT_PHRASE
    instance_prompt: str = INSTANCE_PROMPT
    batch_size: int = 1
    gradient_checkpointing: bool = False
    max_grad_norm: float = 1.0
    adam_weight_decay: float = 1e-2

    def __post_init__(self) -> None:
        if (
            self.steps < 0
            or self.rank < 1
            or self.alpha <= 0
            or self.learning_rate <= 0
            or self.batch_size < 1
        ):
            raise ValueError(
                "steps >= 0, rank >= 1, alpha > 0, learning_rate > 0 and batch_size >= 1 required"
            )
        if self.resolution is not None and (self.resolution < 8 or self.resolution % 8):
            raise ValueError("resolution must be a positive multiple of 8")
        if self.subject_phrase not in self.instance_prompt:
            raise ValueError("instance_prompt must contain subject_phrase (the renderer prompts with it)")


@dataclass(frozen=True)
class Preset:
    """A base family's defaults plus the rule that scales training length with the number of photos.

    `checkpoint_every` (steps) bounds the work a lost worker throws away; each checkpoint costs a state
    snapshot and an encrypted upload of ~3x the LoRA's size (weights plus AdamW's two moments), which
    runs in the background while training goes on.
    """

    config: TrainConfig
    steps_per_photo: int
    min_steps: int
    max_steps: int
    checkpoint_every: int

    def steps_for(self, photo_count: int) -> int:
        if photo_count < 1:
            raise ValueError("at least one photo is needed")
        return max(self.min_steps, min(self.max_steps, photo_count * self.steps_per_photo))

    def config_for(self, photo_count: int, seed: int = 0) -> TrainConfig:
        return replace(self.config, steps=self.steps_for(photo_count), seed=seed)


PRESETS: dict[BaseFamily, Preset] = {
    # SD 1.5 at 512 px: rank 16 is enough to hold a face, and the LoRA stays small (~3.2M params,
    # ~13 MB as fp32).
    "sd15": Preset(
        config=TrainConfig(
            steps=400,
            rank=16,
            alpha=16,
            learning_rate=1e-4,
            base_family="sd15",
            resolution=512,
            batch_size=2,
        ),
        steps_per_photo=50,
        min_steps=250,
        max_steps=750,
        checkpoint_every=50,  # seconds of GPU time at risk; ~40 MB per checkpoint (LoRA + AdamW moments)
    ),
    # SD 2.x at 768 px (v-prediction; handled by the trainer from the scheduler config).
    "sd2": Preset(
        config=TrainConfig(
            steps=400,
            rank=16,
            alpha=16,
            learning_rate=1e-4,
            base_family="sd2",
            resolution=768,
            batch_size=2,
        ),
        steps_per_photo=50,
        min_steps=250,
        max_steps=750,
        checkpoint_every=50,
    ),
    # SDXL at 1024 px: a bigger UNet learns faster per step; gradient checkpointing keeps memory in check.
    # (Preset only: train_lora supports single-text-encoder SD pipelines today.)
    "sdxl": Preset(
        config=TrainConfig(
            steps=600,
            rank=32,
            alpha=32,
            learning_rate=1e-4,
            base_family="sdxl",
            resolution=1024,
            gradient_checkpointing=True,
        ),
        steps_per_photo=80,
        min_steps=400,
        max_steps=1200,
        checkpoint_every=50,  # slower steps: the same ~15-20 s of work at risk
    ),
    # The tiny random-weight test pipeline: native 64 px, a handful of steps, seconds on a CPU.
    "tiny": Preset(
        config=TrainConfig(steps=8, rank=4, alpha=4, learning_rate=1e-3, base_family="tiny", batch_size=2),
        steps_per_photo=2,
        min_steps=4,
        max_steps=16,
        checkpoint_every=2,  # exercises checkpointing in every dev-stack training
    ),
}


def preset_for(family: BaseFamily) -> Preset:
    return PRESETS[family]


def steps_for(photo_count: int, family: BaseFamily = "sd15") -> int:
    """Training steps for photo_count photos on the given base family (see Preset.steps_for)."""
    return preset_for(family).steps_for(photo_count)
