"""Training speed: our trainer against a naive loop and against the bare-step ceiling, on one model.

The model is Stable Diffusion 1.5's architecture with random weights, channels divided by 4, at 256 px
(``likeness_ml.sd15_shaped``): every convolution costs HW*C^2 and every attention (HW)^2*C, so halving the
side and quartering the channels divides both by 64. This is SD 1.5 at 512 px with every FLOP count
divided by 64, UNet, VAE and their proportions included (what decides the naive loop's cost), small
enough for two CPU cores. Text encoder likewise narrowed (its cost does not depend on the resolution).

Three loops train the same LoRA (SD 1.5 preset: rank 16, batch 2, fused AdamW 1e-4) on the same photos:

- ours: the production ``train_lora`` as a whole job: photos decoded, VAE latents of every photo and its
  mirror image and the prompt embedding computed once, the adapter set up, a checkpoint snapshot handed
  to the real background ``CheckpointWriter`` (serialized and sealed with the envelope, kept in memory
  instead of S3) every ``--checkpoint-every`` steps, the LoRA serialized and sealed at the end. Its
  steps/s count all of that.
- naive: diffusers' ``train_dreambooth_lora.py`` without caching: every step decodes and transforms its
  images, encodes them through the VAE and their prompts through the text encoder, then the same UNet
  step (our ``training_step``, optimizer included).
- ceiling: bare LoRA forward, backward and AdamW steps of the UNet on inputs already in memory.

By default the job has one photo and the preset's 50 steps per photo: a production job's proportion of
fixed work (two VAE encodes per photo) to steps. Rounds interleave the three loops; each loop is then
timed per phase and per step index by its fastest round, so a busy moment on a shared machine skews no
ratio while every step's work still counts. Goals: ours >= 1.5x naive, >= 90% of the ceiling.

    .venv/bin/python bench/trainer.py [--photos 1] [--steps N] [--rounds 3] [--batch-size N]
"""

# ruff: noqa: E402 - the import path is fixed before the trainer package is imported
from __future__ import annotations

import sys
from pathlib import Path

# This script is named like the trainer package; with its folder first on sys.path, `import trainer`
# would import the script itself.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import io
import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline

from likeness import envelope
from likeness.envelope import DataKey, ObjectContext
from likeness.jobs import CancelFlag
from likeness_ml.sd15_shaped import sd15_shaped_pipeline
from trainer.checkpoint_writer import CheckpointWriter
from trainer.lora_training import (
    BatchSampler,
    StepReport,
    add_training_lora,
    encode_posteriors,
    encode_prompt,
    image_to_tensor,
    make_optimizer,
    remove_lora,
    train_lora,
    training_step,
)
from trainer.presets import TrainConfig, preset_for

WIDTH_DIVISOR = 4
RESOLUTION = 256
PHOTO_SIDE = 512  # ingest stores 512 px crops
GOAL_VS_NAIVE = 1.5
GOAL_OF_CEILING = 0.9


@dataclass
class Run:
    """One round of a loop: its fixed work (outside the steps) and each step's duration."""

    fixed_s: float
    step_s: list[float]
    detail: str = ""

    @property
    def seconds(self) -> float:
        return self.fixed_s + sum(self.step_s)


def fastest(runs: list[Run]) -> Run:
    """Per phase and per step index, the fastest round: a shared machine's busy moments drop out, while
    every step's work (the warm-up step, the ones that take a checkpoint snapshot) still counts."""
    steps = [min(durations) for durations in zip(*(run.step_s for run in runs), strict=True)]
    quickest = min(runs, key=lambda run: run.seconds)
    return Run(min(run.fixed_s for run in runs), steps, quickest.detail)


def steps_per_s(run: Run) -> float:
    return len(run.step_s) / run.seconds


class SealedInMemory:
    """TrainingObjects' writing half, sealing exactly as production does but keeping blobs in memory."""

    def __init__(self) -> None:
        self.key = DataKey(
            plaintext=os.urandom(32),
            wrapped="vault:v1:bench",
            key_name="likeness-subject-bench",
            key_version=1,
        )
        self.blobs: dict[str, bytes] = {}

    def _put(self, name: str, data: bytes) -> None:
        context = ObjectContext(tenant="bench", subject="sub_bench", object_key=name, kind="checkpoint")
        self.blobs[name] = envelope.seal_bytes(data, self.key, context)

    def put_checkpoint(self, step: int, data: bytes) -> None:
        self._put(f"ckpt-{step:08d}", data)

    def prune_checkpoints(self, keep: int) -> None:
        for name in sorted(n for n in self.blobs if n.startswith("ckpt-"))[:-keep]:
            del self.blobs[name]

    def put_lora(self, data: bytes) -> None:
        self._put("lora", data)


def synthetic_photos(count: int) -> list[bytes]:
    """PNG "selfies" at ingest's crop size: a face-like oval on a soft gradient, plus sensor noise."""
    rng = np.random.default_rng(0)
    photos = []
    yy, xx = np.mgrid[:PHOTO_SIDE, :PHOTO_SIDE] / PHOTO_SIDE
    for index in range(count):
        pixels = np.stack([60 + 120 * yy, 90 + 80 * xx, 160 - 40 * yy + 20 * index], axis=-1)
        face = ((yy - 0.48) / 0.3) ** 2 + ((xx - 0.5 - 0.03 * index) / 0.21) ** 2 < 1
        pixels[face] = (224, 172, 140)
        pixels += rng.normal(0, 5, pixels.shape)
        buffer = io.BytesIO()
        PIL.Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
        photos.append(buffer.getvalue())
    return photos


def decode(png: bytes) -> PIL.Image.Image:
    with PIL.Image.open(io.BytesIO(png), formats=["PNG"]) as image:
        return image.convert("RGB")


def run_ours(pipe: StableDiffusionPipeline, photos: list[bytes], config: TrainConfig, every: int) -> Run:
    """The production path for one job, from decrypted photo bytes to the sealed LoRA."""
    started = time.perf_counter()
    images = [decode(png) for png in photos]
    decoded = time.perf_counter()
    sink = SealedInMemory()
    writer = CheckpointWriter(sink, CancelFlag(), keep=2)  # type: ignore[arg-type]  # in-memory stand-in
    reports: list[StepReport] = []
    try:
        result = train_lora(
            pipe, images, config, on_step=reports.append, checkpoint_every=every, on_checkpoint=writer.submit
        )
    finally:
        writer.close()
    sink.put_lora(result.lora_safetensors)
    finished = time.perf_counter()
    # StepReport.elapsed_s counts from train_lora's start; its first step starts when preparing ends.
    ends = [result.timings.prepare_s] + [report.elapsed_s for report in reports]
    step_s = [later - earlier for earlier, later in itertools.pairwise(ends)]
    fixed_s = (finished - started) - sum(step_s)
    t = result.timings
    finish_s = fixed_s - (decoded - started) - t.prepare_s
    detail = (
        f"decode {decoded - started:.2f}s, prepare {t.prepare_s:.2f}s (VAE latents of "
        f"{2 * len(photos)} views, prompt, adapter), {len(step_s)} steps (snapshots {t.checkpoint_s:.2f}s), "
        f"{len(writer.stored)} checkpoints sealed in the background ({writer.seconds:.2f}s), "
        f"LoRA {len(result.lora_safetensors) / 1e6:.1f} MB serialized and sealed ({finish_s:.2f}s)"
    )
    return Run(fixed_s, step_s, detail)


def run_naive(pipe: StableDiffusionPipeline, photos: list[bytes], config: TrainConfig) -> Run:
    """The reference loop without caching: data pipeline, VAE and text encoder inside every step."""
    resolution = config.resolution or RESOLUTION
    unet = pipe.unet
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    started = time.perf_counter()
    add_training_lora(unet, config)
    step_s: list[float] = []
    try:
        optimizer = make_optimizer([p for p in unet.parameters() if p.requires_grad], config)
        generator = torch.Generator().manual_seed(config.seed)
        sampler = BatchSampler(2 * len(photos), config.batch_size, generator)
        unet.train()
        prepared = time.perf_counter()
        for _ in range(config.steps):
            step_started = time.perf_counter()
            views = sampler.next().tolist()
            # The dataset's __getitem__ per example: open the image, transform it (mirrored for odd views).
            batch = [decode(photos[view % len(photos)]) for view in views]
            batch = [
                image.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT) if view >= len(photos) else image
                for image, view in zip(batch, views, strict=True)
            ]
            pixels = torch.stack([image_to_tensor(image, resolution) for image in batch])
            pool = encode_posteriors(pipe, pixels)
            # Tokenized per example by the dataset, encoded as a batch (one prompt per example).
            prompt_embeds = torch.cat([encode_prompt(pipe, config.instance_prompt) for _ in views])
            batch_views = torch.arange(len(views))
            training_step(unet, scheduler, pool, prompt_embeds, batch_views, generator, optimizer, config)
            step_s.append(time.perf_counter() - step_started)
    finally:
        unet.eval()
        remove_lora(unet)
    return Run(prepared - started, step_s)


def run_ceiling(pipe: StableDiffusionPipeline, config: TrainConfig) -> Run:
    """Nothing but the LoRA step: UNet forward, MSE, backward, AdamW, on tensors already in memory."""
    unet = pipe.unet
    latent_side = (config.resolution or RESOLUTION) // 8
    generator = torch.Generator().manual_seed(0)
    shape = (config.batch_size, 4, latent_side, latent_side)
    noisy = torch.randn(shape, generator=generator)
    target = torch.randn(shape, generator=generator)
    timesteps = torch.randint(0, 1000, (config.batch_size,), generator=generator)
    context = encode_prompt(pipe, config.instance_prompt).expand(config.batch_size, -1, -1)
    add_training_lora(unet, config)
    step_s: list[float] = []
    try:
        optimizer = make_optimizer([p for p in unet.parameters() if p.requires_grad], config)
        unet.train()
        for _ in range(config.steps):
            step_started = time.perf_counter()
            prediction = unet(noisy, timesteps, encoder_hidden_states=context).sample
            F.mse_loss(prediction, target).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step_s.append(time.perf_counter() - step_started)
    finally:
        unet.eval()
        remove_lora(unet)
    return Run(0.0, step_s)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # One photo and the SD 1.5 preset's 50 steps per photo: a production job's proportion of fixed work
    # (two VAE encodes per photo) to steps. The baselines are timed per step, so half as many do.
    parser.add_argument("--photos", type=int, default=1)
    parser.add_argument(
        "--steps", type=int, default=0, help="steps of our job (default: the preset's per photo)"
    )
    parser.add_argument("--baseline-steps", type=int, default=0, help="naive and ceiling (default: half)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=0, help="default: the SD 1.5 preset's")
    parser.add_argument("--checkpoint-every", type=int, default=10)
    args = parser.parse_args()

    torch.manual_seed(0)
    built = time.perf_counter()
    pipe = sd15_shaped_pipeline(WIDTH_DIVISOR, RESOLUTION)
    built_s = time.perf_counter() - built
    preset = preset_for("sd15")
    steps = args.steps or preset.steps_per_photo * args.photos
    config = replace(
        preset.config,
        steps=steps,
        resolution=RESOLUTION,
        batch_size=args.batch_size or preset.config.batch_size,
    )
    baseline_config = replace(config, steps=args.baseline_steps or max(1, steps // 2))
    photos = synthetic_photos(args.photos)
    loops: dict[str, Callable[[], Run]] = {
        "ours": lambda: run_ours(pipe, photos, config, args.checkpoint_every),
        "naive": lambda: run_naive(pipe, photos, baseline_config),
        "ceiling": lambda: run_ceiling(pipe, baseline_config),
    }
    runs: dict[str, list[Run]] = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, loop in loops.items():
            runs[name].append(loop())
    ours, naive, ceiling = (fastest(runs[name]) for name in ("ours", "naive", "ceiling"))
    vs_naive = steps_per_s(ours) / steps_per_s(naive)
    of_ceiling = steps_per_s(ours) / steps_per_s(ceiling)
    whole_rounds = ", ".join(
        f"{name} " + "/".join(f"{run.seconds:.1f}" for run in rounds) for name, rounds in runs.items()
    )

    def params(module: torch.nn.Module) -> str:
        return f"{sum(p.numel() for p in module.parameters()) / 1e6:.1f}M"

    print(
        f"trainer: SD 1.5-shaped, random weights, channels/{WIDTH_DIVISOR} at {RESOLUTION} px "
        f"(= SD 1.5 at 512 px with every FLOP /64): UNet {params(pipe.unet)}, VAE {params(pipe.vae)}, "
        f"text encoder {params(pipe.text_encoder)} (built in {built_s:.1f}s)"
    )
    print(
        f"LoRA rank {config.rank}, batch {config.batch_size}, "
        f"{args.photos} photos ({2 * args.photos} views); "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
        f"best of {args.rounds} interleaved rounds"
    )
    print()
    print(f"{'loop':<44}{'steps':>6}{'seconds':>9}{'steps/s':>9}{'ours is':>9}")
    rows = (
        ("ours: whole job (cached latents + prompt)", ours, 1.0),
        ("naive: VAE + text encoder every step", naive, vs_naive),
        ("ceiling: bare UNet LoRA step in memory", ceiling, of_ceiling),
    )
    for label, run, ratio in rows:
        print(f"{label:<44}{len(run.step_s):>6}{run.seconds:>9.2f}{steps_per_s(run):>9.3f}{ratio:>8.2f}x")
    print(f"ours, in detail: {ours.detail}")
    print(f"seconds: per phase and step, the fastest of the rounds; whole rounds took (s): {whole_rounds}")
    print(
        f"vs naive {vs_naive:.2f}x (goal >= {GOAL_VS_NAIVE}), of ceiling {of_ceiling * 100:.1f}% "
        f"(goal >= {GOAL_OF_CEILING * 100:.0f}%)"
    )
    print(
        json.dumps(
            {
                "bench": "trainer",
                "vs_naive": round(vs_naive, 3),
                "of_ceiling": round(of_ceiling, 3),
                "steps_per_s": round(steps_per_s(ours), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
