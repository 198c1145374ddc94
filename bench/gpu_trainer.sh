#!/usr/bin/env bash
# GPU check of the trainer: Stable Diffusion 1.5's UNet, VAE and text encoder with random weights, bf16,
# training a rank-16 LoRA at 512 px through the production `train_lora` (cached latents and prompt, SDPA,
# TF32, fused AdamW), next to the bare-step ceiling and the naive loop (VAE + text encoder every step).
# Prints steps/s and peak GPU memory; the last line is JSON.
#
#   bash bench/gpu_trainer.sh                  # on a CUDA machine, from the repository root
#   bash bench/gpu_trainer.sh --cpu --tiny     # dry run anywhere (channels/4 at 128 px, a few steps)
#   options: --steps N (default 120) --batch-size N (default: the SD 1.5 preset's) --no-baselines
#
# A bare CUDA machine with PyTorch, transformers, peft, accelerate and safetensors needs only what is in
# .whl/ (diffusers and its few pure-Python dependencies): installed with --no-index into a scratch folder.
# Only likeness_ml and the trainer's training code are imported (no NATS, S3 or Vault clients).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
SITE="${LIKENESS_GPU_SITE:-/tmp/likeness-gpu-site}"

if ! "$PYTHON" -c "import diffusers" 2>/dev/null; then
  if ! PYTHONPATH="$SITE" "$PYTHON" -c "import diffusers" 2>/dev/null; then
    if ! compgen -G ".whl/*.whl" >/dev/null; then
      echo "diffusers is not installed and there are no wheels in .whl/ to install it from" >&2
      exit 2
    fi
    echo "installing the wheels in .whl/ into $SITE" >&2
    # One by one: a wheel built for another Python (pydantic-core) must not stop the ones diffusers needs.
    for wheel in .whl/*.whl; do
      "$PYTHON" -m pip install -q --no-index --no-deps --target "$SITE" "$wheel" \
        || echo "skipped $(basename "$wheel")" >&2
    done
    if ! PYTHONPATH="$SITE" "$PYTHON" -c "import diffusers"; then
      echo "diffusers still cannot be imported from $SITE" >&2
      exit 2
    fi
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="libs/likeness_ml:services/trainer:libs/likeness${PYTHONPATH:+:$PYTHONPATH}"
export DIFFUSERS_VERBOSITY=error TRANSFORMERS_VERBOSITY=error
# A benchmark, never a deployment: said explicitly, since an unset LIKENESS_ENV means production.
export LIKENESS_ENV=development

exec "$PYTHON" - "$@" <<'PY'
import argparse
import json
import sys
import time
from dataclasses import replace

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from likeness_ml.base_model import enable_tf32, use_sdpa_attention
from likeness_ml.sd15_shaped import sd15_shaped_pipeline
from trainer.lora_training import (
    add_training_lora,
    encode_posteriors,
    encode_prompt,
    image_to_tensor,
    make_optimizer,
    remove_lora,
    train_lora,
    training_step,
    BatchSampler,
)
from trainer.presets import preset_for

parser = argparse.ArgumentParser(prog="bench/gpu_trainer.sh")
parser.add_argument("--cpu", action="store_true", help="run on the CPU (a dry run of the script)")
parser.add_argument("--tiny", action="store_true", help="channels/4 at 128 px and a few steps")
parser.add_argument("--steps", type=int, default=0)
parser.add_argument("--batch-size", type=int, default=0)
parser.add_argument("--no-baselines", action="store_true", help="only our trainer")
args = parser.parse_args(sys.argv[1:])

if not args.cpu and not torch.cuda.is_available():
    sys.exit("no CUDA device (use --cpu --tiny for a dry run)")
device = torch.device("cpu") if args.cpu else torch.device("cuda")
dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
divisor, resolution = (4, 128) if args.tiny else (1, 512)
steps = args.steps or (6 if args.tiny else 120)
warmup = max(1, steps // 6)
preset = preset_for("sd15").config
config = replace(
    preset, steps=steps, resolution=resolution, batch_size=args.batch_size or preset.batch_size
)
name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
print(f"torch {torch.__version__} on {name}; SD 1.5-shaped (channels/{divisor}) at {resolution} px, {dtype}")

started = time.perf_counter()
pipe = sd15_shaped_pipeline(divisor, resolution, device=device, dtype=dtype)
use_sdpa_attention(pipe)
if device.type == "cuda":
    enable_tf32()
params = {k: sum(p.numel() for p in getattr(pipe, k).parameters()) / 1e6 for k in ("unet", "vae", "text_encoder")}
print(f"built in {time.perf_counter() - started:.1f}s: " + ", ".join(f"{k} {v:.0f}M" for k, v in params.items()))


def photos(count=4, side=512):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:side, :side] / side
    images = []
    for index in range(count):
        pixels = np.stack([60 + 120 * yy, 90 + 80 * xx, 160 - 40 * yy + 20 * index], axis=-1)
        pixels[((yy - 0.48) / 0.3) ** 2 + ((xx - 0.5) / 0.21) ** 2 < 1] = (224, 172, 140)
        pixels += rng.normal(0, 5, pixels.shape)
        images.append(PIL.Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return images


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


images = photos()
results = {}

# --- ours: the production training function, a whole job ------------------------------------------
if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
marks = {}


def on_step(report):
    if report.step in (warmup, steps):
        marks[report.step] = time.perf_counter()


job_started = time.perf_counter()
result = train_lora(pipe, images, config, on_step=on_step)
job_s = time.perf_counter() - job_started
steady = (steps - warmup) / (marks[steps] - marks[warmup])
peak_gib = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
reserved_gib = torch.cuda.max_memory_reserved() / 2**30 if device.type == "cuda" else 0.0
t = result.timings
print(
    f"ours:    {steady:7.2f} steps/s steady ({steps} steps, batch {config.batch_size}, rank {config.rank}); "
    f"whole job {steps / job_s:.2f} steps/s (prepare {t.prepare_s:.2f}s, steps {t.train_s:.2f}s, "
    f"serialize {t.serialize_s:.2f}s)"
)
print(f"peak GPU memory: {peak_gib:.2f} GiB allocated, {reserved_gib:.2f} GiB reserved")
results.update(steps_per_s=round(steady, 3), job_steps_per_s=round(steps / job_s, 3), peak_gib=round(peak_gib, 2))

if not args.no_baselines:
    unet = pipe.unet
    # --- ceiling: bare LoRA step on tensors already on the device -----------------------------------
    add_training_lora(unet, config)
    try:
        optimizer = make_optimizer([p for p in unet.parameters() if p.requires_grad], config)
        side = resolution // 8
        noisy = torch.randn(config.batch_size, 4, side, side, device=device, dtype=dtype)
        target = torch.randn_like(noisy)
        timesteps = torch.randint(0, 1000, (config.batch_size,), device=device)
        context = encode_prompt(pipe, config.instance_prompt).expand(config.batch_size, -1, -1)
        unet.train()
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
        for index in range(steps):
            if index == warmup:
                sync()
                ceiling_started = time.perf_counter()
            with autocast:
                prediction = unet(noisy, timesteps, encoder_hidden_states=context).sample
            F.mse_loss(prediction.float(), target.float()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        sync()
        ceiling = (steps - warmup) / (time.perf_counter() - ceiling_started)
    finally:
        unet.eval()
        remove_lora(unet)
    print(f"ceiling: {ceiling:7.2f} steps/s (bare UNet LoRA step); ours is {steady / ceiling * 100:.1f}% of it")

    # --- naive: VAE and text encoder inside every step --------------------------------------------
    naive_steps = max(2, steps // 3)
    naive_warmup = max(1, naive_steps // 6)
    scheduler_config = pipe.scheduler.config
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(scheduler_config)
    add_training_lora(unet, config)
    try:
        optimizer = make_optimizer([p for p in unet.parameters() if p.requires_grad], config)
        generator = torch.Generator().manual_seed(0)
        sampler = BatchSampler(2 * len(images), config.batch_size, generator)
        unet.train()
        for index in range(naive_steps):
            if index == naive_warmup:
                sync()
                naive_started = time.perf_counter()
            views = sampler.next().tolist()
            batch = [images[v % len(images)] for v in views]
            batch = [im.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT) if v >= len(images) else im for im, v in zip(batch, views)]
            pool = encode_posteriors(pipe, torch.stack([image_to_tensor(im, resolution) for im in batch]))
            embeds = torch.cat([encode_prompt(pipe, config.instance_prompt) for _ in views])  # one per example
            training_step(unet, scheduler, pool, embeds, torch.arange(len(views)), generator, optimizer, config)
        sync()
        naive = (naive_steps - naive_warmup) / (time.perf_counter() - naive_started)
    finally:
        unet.eval()
        remove_lora(unet)
    print(f"naive:   {naive:7.2f} steps/s (VAE + text encoder every step); ours is {steady / naive:.2f}x")
    results.update(of_ceiling=round(steady / ceiling, 3), vs_naive=round(steady / naive, 3))

print(json.dumps({"bench": "gpu_trainer", "device": name, "resolution": resolution, "batch_size": config.batch_size, **results}))
PY
