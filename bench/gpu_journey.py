"""A person's whole journey, timed through the production functions: training, then 40 headshots, then
instant mode, for an SD 1.5-shaped and an SDXL-shaped base model. Started by ``bench/gpu_journey.sh``
(which bootstraps diffusers on a bare GPU machine); read that script's header for the options.

Per family, in this order (SD 1.5 first: a short GPU lease gets its figures before SDXL's):

- build: the random-weight base model on the device (a worker's start; not counted);
- class_images: prior preservation's class images, generated once per base model by
  ``trainer.class_prior.ClassPriors`` (a worker's start; not counted, printed apart);
- train: ``trainer.lora_training.train_lora`` with the family's preset for 12 photos (steps, rank, batch,
  gradient checkpointing as the trainer would use them), taking the trainer's checkpoint snapshots;
- render: 4 styles x 10 images through ``renderer.generation`` (the LoRA merged from bytes by
  ``subject_lora``, one batched call per style, tuned for the family), each image then marked (watermark,
  IPTC, C2PA) and sealed (AES-GCM envelope) in a worker thread while the next style renders, as the worker
  does; no NATS, S3 or Vault (their time is measured by ``bench/renderer.py`` and ``bench/trainer.py``);
- instant: the time to the first 4 headshots from one photo (``likeness_ml.identity_adapter``: embedding,
  adapter attached, one batch, marked and sealed), with a plus-face adapter of the published shape.

Where a phase would not fit ``--budget-s``, training stops after the budget and rendering after the style
that crosses it; the figure is then extrapolated from the measured steady-state rate and labelled so.
Every phase's figures are printed as one JSON line as soon as known and appended to
``$OUT/gpu_journey_phases.jsonl``; a table follows, and the last line is one JSON object with every figure
and the goals.
"""

# ruff: noqa: E402  (the import path is fixed before the imports)
from __future__ import annotations

import sys
from pathlib import Path

# bench/renderer.py and bench/trainer.py are named like the service packages: this folder must not
# shadow them.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import argparse
import concurrent.futures
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import PIL.Image
import torch

from likeness.envelope import DataKey, ObjectContext, seal_bytes
from likeness_ml.base_model import BasePipeline, detect_family, enable_tf32, shaped_like, use_sdpa_attention
from renderer.generation import generate, subject_lora
from renderer.marking import OutputMarker
from renderer.styles import Style, load_styles
from trainer.class_prior import ClassPriors
from trainer.lora_training import StepReport, train_lora
from trainer.presets import Preset, TrainConfig, preset_for

GOALS_S = {"sd15": 90.0, "sdxl": 300.0}
INSTANT_GOAL_S = 5.0  # SDXL
POST_DENOISE_GOAL_MS = 50.0
PHOTOS = 12
STYLES = 4
IMAGES_PER_STYLE = 10
INSTANT_IMAGES = 4
#: Training steps (styles, for renders) always measured before a budget may stop a phase.
MIN_MEASURED_STEPS = 3
MIN_MEASURED_STYLES = 2
#: Sampler steps of the dry run's renders (a handful: the code path is what a dry run checks; the render
#: worker takes 6 on a tiny model, and the styles' own counts on real ones).
DRY_RUN_RENDER_STEPS = 2
_LABELS = {
    "tiny": "tiny SD (64 px)",
    "tiny_sdxl": "tiny SDXL (64 px)",
    "sd15": "SD 1.5-shaped",
    "sdxl": "SDXL-shaped",
}


@dataclass
class Run:
    """Where figures go: printed as they come, appended to the phases file, kept for the summary."""

    phases_file: Path | None
    phases: list[dict[str, Any]] = field(default_factory=list)

    def record(self, family: str, phase: str, **figures: Any) -> dict[str, Any]:
        entry = {"family": family, "phase": phase, **figures}
        self.phases.append(entry)
        line = json.dumps(entry)
        print(line, flush=True)
        if self.phases_file is not None:
            with self.phases_file.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        return entry


class Device:
    def __init__(self, cpu: bool) -> None:
        self.torch = torch.device("cpu") if cpu else torch.device("cuda")
        self.dtype = torch.float32 if cpu else torch.bfloat16
        self.name = "cpu" if cpu else torch.cuda.get_device_name()

    def sync(self) -> None:
        if self.torch.type == "cuda":
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.torch.type == "cuda":
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float:
        return torch.cuda.max_memory_allocated() / 2**30 if self.torch.type == "cuda" else 0.0


def build_pipeline(family: str, tiny: bool, device: Device) -> BasePipeline:
    if tiny:
        from likeness_ml.tiny_model import build_tiny_pipeline
        from likeness_ml.tiny_sdxl_model import build_tiny_sdxl_pipeline

        pipe: BasePipeline = (build_tiny_sdxl_pipeline if family == "sdxl" else build_tiny_pipeline)()
        pipe = pipe.to(device.torch, device.dtype)
        for model in (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
            if model is not None:
                model.eval().requires_grad_(False)
        pipe.set_progress_bar_config(disable=True)
    elif family == "sdxl":
        from likeness_ml.sdxl_shaped import sdxl_shaped_pipeline

        pipe = sdxl_shaped_pipeline(device=device.torch, dtype=device.dtype)
    else:
        from likeness_ml.sd15_shaped import sd15_shaped_pipeline

        pipe = sd15_shaped_pipeline(device=device.torch, dtype=device.dtype)
    use_sdpa_attention(pipe)  # as load_pipeline does for a worker
    if device.torch.type == "cuda":
        enable_tf32()
    return pipe


def photos(count: int, side: int, seed: int = 0) -> list[PIL.Image.Image]:
    """Synthetic face-like crops (an oval on a gradient, with noise): their content does not change the
    cost."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side] / side
    images = []
    for index in range(count):
        pixels = np.stack([60 + 120 * yy, 90 + 80 * xx, 160 - 40 * yy + 10 * index], axis=-1)
        pixels[((yy - 0.48) / 0.3) ** 2 + ((xx - 0.5) / 0.21) ** 2 < 1] = (224, 172, 140)
        pixels += rng.normal(0, 5, pixels.shape)
        images.append(PIL.Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return images


# --- the figures' arithmetic --------------------------------------------------------------------------


@dataclass(frozen=True)
class Extrapolation:
    measured_steps: int
    total_steps: int
    per_step_s: float
    measured_s: float
    estimate_s: float

    @property
    def extrapolated(self) -> bool:
        return self.measured_steps < self.total_steps


def extrapolate(
    measured_steps: int, total_steps: int, measured_s: float, steady_per_step_s: float
) -> Extrapolation:
    """What the whole phase costs: what was measured plus the remaining steps at the steady-state rate."""
    remaining = max(0, total_steps - measured_steps)
    return Extrapolation(
        measured_steps, total_steps, steady_per_step_s, measured_s, measured_s + remaining * steady_per_step_s
    )


class StepClock:
    """Marks every training step's end (after a device sync), for the steady-state rate past the warm-up."""

    def __init__(self, device: Device, budget_s: float) -> None:
        self.device = device
        self.budget_s = budget_s
        self.started = time.perf_counter()
        self.ends: list[float] = []

    def on_step(self, _report: StepReport) -> None:
        self.device.sync()
        self.ends.append(time.perf_counter())

    def over_budget(self) -> bool:
        # Never before a few steps: the steady-state rate needs steps past the warm-up to measure.
        if self.budget_s <= 0 or len(self.ends) < MIN_MEASURED_STEPS:
            return False
        return time.perf_counter() - self.started > self.budget_s

    def steady_per_step(self) -> float:
        warmup = min(len(self.ends) - 1, max(1, len(self.ends) // 5))
        if warmup < 1:
            return (self.ends[0] - self.started) if self.ends else 0.0
        return (self.ends[-1] - self.ends[warmup - 1]) / (len(self.ends) - warmup)


# --- phases --------------------------------------------------------------------------------------------


def train_phase(
    run: Run,
    family: str,
    pipe: BasePipeline,
    preset: Preset,
    config: TrainConfig,
    prior: Any,
    device: Device,
    budget_s: float,
) -> tuple[bytes, float, bool]:
    """train_lora as the trainer runs it; returns the LoRA, the phase's seconds (or their estimate), and
    whether that figure is extrapolated."""
    images = photos(PHOTOS, config.resolution or 512)
    clock = StepClock(device, budget_s)
    result = train_lora(
        pipe,
        images,
        config,
        on_step=clock.on_step,
        should_stop=clock.over_budget,
        checkpoint_every=preset.checkpoint_every,
        on_checkpoint=lambda _state: None,  # the snapshot is taken (its cost counts); the upload is S3's
        prior=prior,
    )
    timings = result.timings
    lora = result.lora_safetensors
    serialize_s = timings.serialize_s
    if result.cancelled:
        # The budget ran out before the last step: a short run of the same config gives the LoRA the
        # renders need (its own cost not counted) and the serialization time of a full one.
        short = train_lora(pipe, images, replace(config, steps=2), prior=prior)
        lora, serialize_s = short.lora_safetensors, short.timings.serialize_s
    estimate = extrapolate(result.steps_done, config.steps, timings.train_s, clock.steady_per_step())
    seconds = timings.prepare_s + estimate.estimate_s + serialize_s
    run.record(
        family,
        "train",
        seconds=round(seconds, 2),
        extrapolated=estimate.extrapolated,
        steps=config.steps,
        measured_steps=estimate.measured_steps,
        per_step_s=round(estimate.per_step_s, 4),
        measured_train_s=round(timings.train_s, 2),
        prepare_s=round(timings.prepare_s, 2),
        serialize_s=round(serialize_s, 3),
        checkpoint_snapshot_s=round(timings.checkpoint_s, 2),
        batch_size=config.batch_size,
        rank=config.rank,
        resolution=config.resolution,
        prior_preservation=config.with_prior_preservation,
        gradient_checkpointing=config.gradient_checkpointing,
    )
    return lora, seconds, estimate.extrapolated


@dataclass
class Finisher:
    """The render worker's post-denoising work per image: mark (watermark, IPTC, C2PA) and seal."""

    marker: OutputMarker
    c2pa: bool
    timings_ms: list[float] = field(default_factory=list)

    def finish(self, image: PIL.Image.Image) -> bytes:
        started = time.perf_counter()
        png = self.marker.mark(image)
        key = DataKey(os.urandom(32), "vault:v1:bench", "bench", 1)
        sealed = seal_bytes(png, key, ObjectContext("bench", "bench", "bench/render.png", "render"))
        self.timings_ms.append((time.perf_counter() - started) * 1000)
        return sealed


def make_finisher() -> Finisher:
    """The worker's marker (renderer.worker.make_marker) with throwaway C2PA credentials; without the c2pa
    library (a bare GPU machine may lack its wheel) images are marked without a manifest, and said so."""
    from renderer.provenance import Credentials, ManifestSigner, ProvenanceUnavailable

    try:
        signer: ManifestSigner | None = ManifestSigner(Credentials.ephemeral()[0])
    except (ProvenanceUnavailable, ImportError) as missing:
        print(
            f"C2PA signing unavailable ({missing}): post-denoising cost measured without it", file=sys.stderr
        )
        signer = None
    return Finisher(OutputMarker("bench-watermark-key", signer), signer is not None)


def render_phase(
    run: Run,
    family: str,
    pipe: BasePipeline,
    lora: bytes,
    styles: list[Style],
    steps: int | None,
    finisher: Finisher,
    device: Device,
    budget_s: float,
) -> tuple[float, bool]:
    """4 styles x 10 images with the LoRA merged, each style one batch, marked and sealed beside the next."""
    from likeness_ml.subject import SUBJECT_PHRASE

    per_style: list[float] = []
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool, subject_lora(pipe, lora):
        pending: list[concurrent.futures.Future[bytes]] = []
        for index, style in enumerate(styles):
            style_started = time.perf_counter()
            seeds = [index * 1000 + i for i in range(IMAGES_PER_STYLE)]
            images = generate(pipe, style, seeds, SUBJECT_PHRASE, steps)
            device.sync()
            pending.extend(pool.submit(finisher.finish, image) for image in images)
            per_style.append(time.perf_counter() - style_started)
            over = budget_s > 0 and time.perf_counter() - started > budget_s
            if over and MIN_MEASURED_STYLES <= index + 1 < len(styles):
                break
        for future in pending:
            future.result()
    measured_s = time.perf_counter() - started
    # A style's batch is the step here: the first one carries the warm-up, so the rate is from the rest.
    steady = sum(per_style[1:]) / len(per_style[1:]) if len(per_style) > 1 else per_style[0]
    estimate = extrapolate(len(per_style), len(styles), measured_s, steady)
    run.record(
        family,
        "render",
        seconds=round(estimate.estimate_s, 2),
        extrapolated=estimate.extrapolated,
        images=len(styles) * IMAGES_PER_STYLE,
        measured_styles=len(per_style),
        per_style_s=[round(s, 2) for s in per_style],
        sampler_steps=steps or styles[0].steps,
        guidance_scale=styles[0].guidance_scale,
        images_per_s=round(len(per_style) * IMAGES_PER_STYLE / measured_s, 3),
    )
    return estimate.estimate_s, estimate.extrapolated


def post_denoise_phase(
    run: Run, family: str, pipe: BasePipeline, finisher: Finisher, device: Device, images: int = 4
) -> float:
    """Per image after the last sampler step: VAE decode, then mark and seal (one image at a time)."""
    side = int(pipe.unet.config.sample_size)
    latents = torch.randn(images, 4, side, side, device=device.torch, dtype=pipe.vae.dtype)
    decode_s = []
    with torch.inference_mode():
        for index in range(images + 1):  # the first decode warms the kernels up
            device.sync()
            began = time.perf_counter()
            decoded = pipe.vae.decode(
                latents[index % images : index % images + 1] / pipe.vae.config.scaling_factor
            ).sample
            pil = pipe.image_processor.postprocess(decoded.float(), output_type="pil")[0]
            device.sync()
            decode_s.append(time.perf_counter() - began)
    del finisher.timings_ms[:]
    for _ in range(images):
        finisher.finish(pil)
    decode_ms = 1000 * sum(decode_s[1:]) / images
    mark_seal_ms = sum(finisher.timings_ms) / images
    total = decode_ms + mark_seal_ms
    run.record(
        family,
        "post_denoise",
        ms_per_image=round(total, 1),
        decode_ms=round(decode_ms, 1),
        mark_and_seal_ms=round(mark_seal_ms, 1),
        c2pa=finisher.c2pa,
        goal_ms=POST_DENOISE_GOAL_MS,
    )
    return total


def _instant_defaults() -> tuple[str, float]:
    """Instant mode's subject phrase and adapter scale, from the renderer itself where its settings import
    (a bare GPU machine may lack the settings' dependencies: then the documented defaults, said so)."""
    try:
        from renderer.config import RendererSettings
        from renderer.instant import INSTANT_PHRASE

        return INSTANT_PHRASE, float(RendererSettings.model_fields["identity_adapter_scale"].default)
    except ImportError as missing:
        print(f"renderer settings not importable ({missing}): instant defaults assumed", file=sys.stderr)
        return "photo of a person", 0.7


def _write_adapter(folder: Path, pipe: BasePipeline, tiny: bool, device: Device) -> Path:
    adapter_dir = folder / "identity-adapter"
    if tiny:
        from likeness_ml.tiny_identity_adapter import write_tiny_identity_adapter

        # The tiny adapter is shaped from the base model's configs alone: no weights need writing.
        base_dir = folder / "base-configs"
        pipe.save_config(str(base_dir))
        pipe.unet.save_config(str(base_dir / "unet"))
        return write_tiny_identity_adapter(adapter_dir, base_dir)
    from likeness_ml.identity_adapter_shaped import write_plus_face_shaped

    return write_plus_face_shaped(adapter_dir, pipe.unet, device.torch, device.dtype)


def instant_phase(
    run: Run,
    family: str,
    pipe: BasePipeline,
    tiny: bool,
    style: Style,
    steps: int | None,
    finisher: Finisher,
    device: Device,
) -> float | None:
    """Time to the first 4 headshots from one photo: embedding, adapter attached, one batch, marked and
    sealed."""
    try:
        from likeness_ml.identity_adapter import face_embeds, identity_attached, load_identity_adapter
    except ImportError as missing:
        run.record(family, "instant", gap=f"instant mode's adapter code is not in this tree ({missing})")
        return None
    phrase, scale = _instant_defaults()
    with tempfile.TemporaryDirectory(prefix="likeness-journey-") as folder:
        began = time.perf_counter()
        adapter = load_identity_adapter(pipe, _write_adapter(Path(folder), pipe, tiny, device))
        load_s = time.perf_counter() - began
    photo = photos(1, 512, seed=1)[0]
    seeds = list(range(INSTANT_IMAGES))

    def first_headshots(pool: concurrent.futures.ThreadPoolExecutor) -> float:
        device.sync()
        started = time.perf_counter()
        embeds = face_embeds(pipe, adapter, photo)
        with identity_attached(pipe, adapter, scale):
            images = generate(pipe, style, seeds, phrase, steps, identity=embeds)
        list(pool.map(finisher.finish, images))
        return time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(max_workers=INSTANT_IMAGES) as pool:
        cold = first_headshots(pool)  # the adapter's kernels' first use on this worker
        warm = first_headshots(pool)
    run.record(
        family,
        "instant",
        seconds=round(warm, 2),
        first_call_s=round(cold, 2),
        images=INSTANT_IMAGES,
        sampler_steps=steps or style.steps,
        adapter_setup_s=round(load_s, 2),
        adapter_scale=scale,
        goal_s=INSTANT_GOAL_S if family == "sdxl" else None,
    )
    return warm


@contextlib.contextmanager
def fresh_peak(device: Device) -> Iterator[None]:
    device.reset_peak()
    yield


def journey(
    run: Run, family: str, args: argparse.Namespace, device: Device, finisher: Finisher
) -> dict[str, Any]:
    with fresh_peak(device):
        began = time.perf_counter()
        pipe = build_pipeline(family, args.tiny, device)
        model = detect_family(pipe)
        run.record(
            family,
            "build",
            seconds=round(time.perf_counter() - began, 2),
            counted=False,
            model=model,
            unet_params_m=round(sum(p.numel() for p in pipe.unet.parameters()) / 1e6, 1),
        )
        preset = preset_for(model)
        config = replace(preset.config_for(PHOTOS), with_prior_preservation=args.prior)
        prior = None
        if args.prior:
            config = replace(config, num_class_images=args.class_images or preset.config.num_class_images)
            began = time.perf_counter()
            prior = ClassPriors().get(pipe, config, preset.class_inference_steps)
            device.sync()
            seconds = time.perf_counter() - began
            production = preset.config.num_class_images
            run.record(
                family,
                "class_images",
                seconds=round(seconds, 2),
                counted=False,
                images=config.num_class_images,
                sampler_steps=preset.class_inference_steps,
                production_images=production,
                production_estimate_s=round(seconds / config.num_class_images * production, 1),
            )
        steps = DRY_RUN_RENDER_STEPS if args.tiny else None
        styles = [style.for_family(shaped_like(model)) for style in list(load_styles().values())[:STYLES]]
        lora, train_s, train_x = train_phase(run, family, pipe, preset, config, prior, device, args.budget_s)
        render_s, render_x = render_phase(
            run, family, pipe, lora, styles, steps, finisher, device, args.budget_s
        )
        post_ms = post_denoise_phase(run, family, pipe, finisher, device)
        instant_s = instant_phase(run, family, pipe, args.tiny, styles[0], steps, finisher, device)
        total = train_s + render_s
        summary = run.record(
            family,
            "journey",
            seconds=round(total, 2),
            train_s=round(train_s, 2),
            render_s=round(render_s, 2),
            extrapolated=train_x or render_x,
            goal_s=GOALS_S[family],
            meets_goal=total < GOALS_S[family],
            post_denoise_ms=round(post_ms, 1),
            instant_s=None if instant_s is None else round(instant_s, 2),
            peak_gib=round(device.peak_gib(), 2),
            model=model,
        )
    del pipe, lora, prior
    if device.torch.type == "cuda":
        torch.cuda.empty_cache()
    return summary


def table(summaries: list[dict[str, Any]]) -> str:
    rows = [
        f"{'family':<20} {'train s':>9} {'render s':>9} {'journey s':>10} {'goal s':>7} "
        f"{'instant s':>10} {'post ms':>8} {'peak GiB':>9}"
    ]
    for row in summaries:
        mark = "*" if row["extrapolated"] else " "
        instant = "gap" if row["instant_s"] is None else f"{row['instant_s']:.2f}"
        rows.append(
            f"{_LABELS.get(row['model'], row['model']):<20} {row['train_s']:>9.1f} {row['render_s']:>9.1f} "
            f"{row['seconds']:>9.1f}{mark} {row['goal_s']:>7.0f} {instant:>10} "
            f"{row['post_denoise_ms']:>8.1f} {row['peak_gib']:>9.2f}"
        )
    if any(row["extrapolated"] for row in summaries):
        rows.append(
            "* extrapolated past --budget-s from the measured steady-state rate (see the phase lines)"
        )
    return "\n".join(rows)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/gpu_journey.sh", description="the journey, timed (see the script)"
    )
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (a dry run of the script)")
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny models of both families, a handful of steps"
    )
    parser.add_argument(
        "--families", default="sd15,sdxl", help="comma-separated, in order (default sd15,sdxl)"
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="seconds per training and render phase before extrapolating "
        "(default: 120 on a GPU, none with --tiny)",
    )
    parser.add_argument(
        "--no-prior", dest="prior", action="store_false", help="train without prior preservation"
    )
    parser.add_argument(
        "--class-images",
        type=int,
        default=0,
        help="class images to generate (default: 8 on a GPU, the preset's with --tiny); "
        "production's count is extrapolated",
    )
    args = parser.parse_args(argv)
    families = args.families.split(",")
    if not families or any(family not in GOALS_S for family in families):
        parser.error(f"--families takes {', '.join(GOALS_S)}")
    args.families = families
    if args.budget_s is None:
        args.budget_s = 0.0 if args.tiny else 120.0
    if not args.class_images and not args.tiny:
        args.class_images = 8
    return args


def main(argv: list[str]) -> None:
    args = parse(argv)
    if not args.cpu and not torch.cuda.is_available():
        sys.exit("no CUDA device (use --cpu --tiny for a dry run)")
    device = Device(args.cpu)
    out = os.environ.get("OUT")
    phases_file = Path(out) / "gpu_journey_phases.jsonl" if out else None
    run = Run(phases_file)
    print(
        f"torch {torch.__version__} on {device.name}, {str(device.dtype).removeprefix('torch.')}; "
        f"budget {args.budget_s:g} s per phase; prior preservation {'on' if args.prior else 'off'}",
        flush=True,
    )
    began = time.perf_counter()
    finisher = make_finisher()
    summaries = [journey(run, family, args, device, finisher) for family in args.families]
    print()
    print(table(summaries))
    instant = next((row["instant_s"] for row in summaries if row["family"] == "sdxl"), None)
    post = [row["post_denoise_ms"] for row in summaries]
    print(
        json.dumps(
            {
                "bench": "gpu_journey",
                "device": device.name,
                "tiny": args.tiny,
                "budget_s": args.budget_s,
                "prior_preservation": args.prior,
                "journeys": {row["family"]: row for row in summaries},
                "phases": run.phases,
                "goals": {
                    "journey_s": GOALS_S,
                    "instant_s": INSTANT_GOAL_S,
                    "post_denoise_ms": POST_DENOISE_GOAL_MS,
                },
                "instant_s": instant,
                "instant_meets_goal": None if instant is None else instant < INSTANT_GOAL_S,
                "post_denoise_ms_max": max(post),
                "seconds": round(time.perf_counter() - began, 1),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
