#!/usr/bin/env bash
# GPU check of the renderer: an SD 1.5-shaped pipeline with random weights (UNet 320/640/1280/1280,
# CLIP ViT-L/14-shaped text encoder, SD VAE), 512 x 512 px, bf16, SDPA attention, 25 sampler steps,
# rendered through the renderer's own code (renderer.generation.generate, one CPU generator per seed,
# the LoRA merged from bytes by renderer.lora_swap). Prints images per second at batch 1, 4 and 8, the
# LoRA switch time against a full pipeline load, the UNet's steps/s at batch 1 through our generate()
# next to a vanilla diffusers pipeline call on the same weights and GPU (goal: at least 0.9 of it), the
# per-image cost after denoising (VAE decode, watermark + IPTC + C2PA marks, AES-GCM sealing; goal: under
# 50 ms), and a JSON summary as its last line.
#
#   bash bench/gpu_renderer.sh            # on the GPU machine (about 2 minutes on an H100)
#   bash bench/gpu_renderer.sh --dry-run  # anywhere: same code path on the CPU, tiny sizes, seconds
#
# Self-contained: it needs python3 with torch (CUDA), transformers, peft, accelerate, safetensors and
# pyyaml, numpy and cryptography. diffusers and pydantic (and c2pa-python, for the manifest's share of the
# post-denoising cost), when missing, are installed from the wheels in .whl/ into /tmp/likeness-gpu-site
# (no network). Only libs/likeness_ml, libs/likeness's envelope, libs/likeness_marks and services/renderer
# are imported.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
  dry_run=1
elif [[ $# -gt 0 ]]; then
  echo "usage: bash bench/gpu_renderer.sh [--dry-run]" >&2
  exit 2
fi

if [[ $dry_run == 1 ]]; then
  python=${PYTHON:-.venv/bin/python}
  [[ -x $python ]] || python=python3
else
  python=${PYTHON:-python3}
  site=/tmp/likeness-gpu-site
  if ! "$python" -c "import diffusers, pydantic" 2>/dev/null; then
    shopt -s nullglob
    wheels=(.whl/*.whl)
    if [[ ${#wheels[@]} == 0 ]]; then
      echo "diffusers/pydantic are missing and there are no wheels in .whl/" >&2
      exit 1
    fi
    "$python" -m pip install -q --no-index --no-deps --target "$site" "${wheels[@]}"
  fi
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="libs/likeness_ml:libs/likeness:libs/likeness_marks:services/renderer${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TRANSFORMERS_VERBOSITY=error DIFFUSERS_VERBOSITY=error
export PYTHONWARNINGS=ignore
# A benchmark, never a deployment: said explicitly, since an unset LIKENESS_ENV means production.
export LIKENESS_ENV=development

exec "$python" - "$dry_run" <<'PY'
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from likeness_ml.base_model import detect_family, enable_tf32, load_pipeline, use_sdpa_attention
from likeness_ml.lora_adapters import remove_lora
from likeness_ml.lora_format import LORA_TARGET_MODULES, LoraMetadata, serialize_lora
from likeness_ml.subject import SUBJECT_PHRASE
from likeness_ml.tiny_tokenizer import END_OF_TEXT, MODEL_MAX_LENGTH, START_OF_TEXT, tiny_vocabulary
from renderer.generation import generate
from renderer.lora_swap import merged_lora
from renderer.styles import get_style

DRY_RUN = sys.argv[1] == "1"
if not DRY_RUN and not torch.cuda.is_available():
    sys.exit("no CUDA device: run with --dry-run to check the script on a CPU")
DEVICE = torch.device("cpu" if DRY_RUN else "cuda")
DTYPE = torch.float32 if DRY_RUN else torch.bfloat16
# SD 1.5 sizes; the dry run keeps the layout at toy widths.
UNET_WIDTHS = (32, 32, 64, 64) if DRY_RUN else (320, 640, 1280, 1280)
VAE_WIDTHS = (32, 32, 32, 32) if DRY_RUN else (128, 256, 512, 512)
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2) if DRY_RUN else dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12
)
RESOLUTION = 64 if DRY_RUN else 512
STEPS = 2 if DRY_RUN else 25
BATCHES = (1, 4, 8)
REPEATS = {1: 1, 4: 1, 8: 1} if DRY_RUN else {1: 3, 4: 2, 8: 2}
LORA_RANK = 4 if DRY_RUN else 16
UNET_REPEATS = 1 if DRY_RUN else 3
GOAL_UNET_OF_VANILLA = 0.9
GOAL_POST_DENOISE_MS = 50.0


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def build() -> StableDiffusionPipeline:
    torch.manual_seed(0)
    vocabulary = tiny_vocabulary()
    tokenizer = CLIPTokenizer(
        vocab=dict(vocabulary.vocab), merges=list(vocabulary.merges), bos_token=START_OF_TEXT,
        eos_token=END_OF_TEXT, pad_token=END_OF_TEXT, unk_token=END_OF_TEXT, model_max_length=MODEL_MAX_LENGTH,
    )
    with torch.device(DEVICE):
        unet = UNet2DConditionModel(
            sample_size=RESOLUTION // 8, in_channels=4, out_channels=4, block_out_channels=UNET_WIDTHS,
            layers_per_block=2, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=TEXT["hidden_size"], attention_head_dim=8, norm_num_groups=32,
        )
        vae = AutoencoderKL(
            sample_size=RESOLUTION, in_channels=3, out_channels=3, block_out_channels=VAE_WIDTHS,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4, layers_per_block=2, norm_num_groups=32,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=max(len(tokenizer), 49408), projection_dim=TEXT["hidden_size"],
                max_position_embeddings=MODEL_MAX_LENGTH, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **TEXT,
            )
        )
    scheduler = PNDMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).to(DEVICE, DTYPE)
    use_sdpa_attention(pipe)
    for model in (pipe.unet, pipe.vae, pipe.text_encoder):
        model.eval().requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    if DEVICE.type == "cuda":
        enable_tf32()
    return pipe


def random_lora(pipe: StableDiffusionPipeline) -> bytes:
    config = LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, init_lora_weights=False,
                        target_modules=list(LORA_TARGET_MODULES))
    pipe.unet.add_adapter(config, adapter_name="gpu_check")
    state = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet, adapter_name="gpu_check"))
    remove_lora(pipe.unet)
    state = {key: value.float() * 0.01 for key, value in state.items()}
    return serialize_lora(state, LoraMetadata(LORA_RANK, float(LORA_RANK), detect_family(pipe), SUBJECT_PHRASE))


class UnetClock:
    """UNet steps per second inside one pipeline call: from the first UNet forward's start to the last
    one's end (CUDA events on a GPU, so nothing waits in between), whatever else the call does around it."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.marks: list[object] = []
        self.forwards = 0  # counted, not assumed: PNDM, for one, runs one more UNet step than asked for
        self.handles = [
            unet.register_forward_pre_hook(lambda *_: self._mark(first=True)),
            unet.register_forward_hook(lambda *_: self._mark(first=False)),
        ]

    def _mark(self, first: bool) -> None:
        if first:
            self.forwards += 1
            if self.marks:
                return
        if DEVICE.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def steps_per_s(self) -> float:
        sync()
        start, end = self.marks[0], self.marks[-1]
        seconds = start.elapsed_time(end) / 1000 if DEVICE.type == "cuda" else end - start
        steps, self.forwards = self.forwards, 0
        self.marks.clear()
        return steps / seconds

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def unet_steps_per_s(pipe: StableDiffusionPipeline, lora: bytes) -> dict[str, float]:
    """Batch 1: ours (renderer.generation.generate, LoRA merged) against a vanilla diffusers call (the
    pipeline's own scheduler and defaults) on the same modules; best of a few after a warm-up each."""
    vanilla = StableDiffusionPipeline(**pipe.components)
    vanilla.set_progress_bar_config(disable=True)
    clock = UnetClock(pipe.unet)
    rates: dict[str, list[float]] = {"ours": [], "vanilla": []}
    try:
        for attempt in range(1 + UNET_REPEATS):
            with merged_lora(pipe, lora):
                generate(pipe, style, [attempt], SUBJECT_PHRASE, STEPS, RESOLUTION)
            ours = clock.steps_per_s()
            with torch.inference_mode():
                vanilla(
                    "a photo of a person", num_inference_steps=STEPS, height=RESOLUTION, width=RESOLUTION,
                    generator=torch.Generator("cpu").manual_seed(attempt), output_type="pil",
                )
            plain = clock.steps_per_s()
            if attempt:  # the first of each is the warm-up
                rates["ours"].append(ours)
                rates["vanilla"].append(plain)
    finally:
        clock.close()
    return {name: max(values) for name, values in rates.items()}


def post_denoise_ms(pipe: StableDiffusionPipeline, images: int = 4) -> dict[str, float | bool]:
    """Per image after the last sampler step, as the worker does it: VAE decode to a PIL image, then the
    marks (watermark, IPTC XMP, C2PA manifest) and the AES-GCM envelope."""
    from likeness.envelope import DataKey, ObjectContext, seal_bytes
    from renderer.marking import OutputMarker
    from renderer.provenance import Credentials, ManifestSigner, ProvenanceUnavailable

    try:
        signer = ManifestSigner(Credentials.ephemeral()[0])
    except (ProvenanceUnavailable, ImportError) as missing:
        say(f"C2PA signing unavailable ({missing}): the post-denoising cost is measured without it")
        signer = None
    marker = OutputMarker("gpu-check-watermark-key", signer)
    side = RESOLUTION // 8
    latents = torch.randn(images + 1, 4, side, side, device=DEVICE, dtype=DTYPE)
    decode, finish = [], []
    with torch.inference_mode():
        for index in range(images + 1):  # the first one warms the kernels up
            sync()
            began = time.perf_counter()
            pixels = pipe.vae.decode(latents[index : index + 1] / pipe.vae.config.scaling_factor).sample
            image = pipe.image_processor.postprocess(pixels.float(), output_type="pil")[0]
            decoded = time.perf_counter()
            png = marker.mark(image)
            key = DataKey(os.urandom(32), "vault:v1:gpu-check", "gpu-check", 1)
            seal_bytes(png, key, ObjectContext("gpu", "check", "gpu/check.png", "render"))
            done = time.perf_counter()
            if index:
                decode.append(decoded - began)
                finish.append(done - decoded)
    decode_ms, finish_ms = 1000 * statistics.mean(decode), 1000 * statistics.mean(finish)
    return {"decode_ms": round(decode_ms, 1), "mark_and_seal_ms": round(finish_ms, 1),
            "ms_per_image": round(decode_ms + finish_ms, 1), "c2pa": signer is not None}


started = time.perf_counter()
device_name = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "cpu (dry run)"
say(f"device: {device_name}; building the SD 1.5-shaped pipeline ...")
pipe = build()
unet_params = sum(p.numel() for p in pipe.unet.parameters())
say(f"built in {time.perf_counter() - started:.1f}s (UNet {unet_params / 1e6:.0f}M parameters)")
style = get_style("linkedin")
lora = random_lora(pipe)

rates = {}
with merged_lora(pipe, lora):  # as the worker renders: with a subject's LoRA merged in
    for batch in BATCHES:
        seeds = list(range(batch))
        generate(pipe, style, seeds, SUBJECT_PHRASE, STEPS, RESOLUTION)  # warm-up (kernels, autotune)
        sync()
        began = time.perf_counter()
        for _ in range(REPEATS[batch]):
            images = generate(pipe, style, seeds, SUBJECT_PHRASE, STEPS, RESOLUTION)
        sync()
        seconds = time.perf_counter() - began
        assert len(images) == batch and images[0].size == (RESOLUTION, RESOLUTION)
        rates[batch] = batch * REPEATS[batch] / seconds
        say(f"batch {batch}: {rates[batch]:.2f} images/s ({seconds / REPEATS[batch]:.2f}s per call)")

# LoRA switch (take one out, merge the next, from bytes) against loading the whole pipeline from disk.
probe = pipe.unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q.weight
before = probe.detach().clone()
switches = []
for _ in range(5):
    sync()
    began = time.perf_counter()
    with merged_lora(pipe, lora):
        sync()
    sync()
    switches.append(time.perf_counter() - began)
restored = bool(torch.equal(before, probe))
unet_rates = unet_steps_per_s(pipe, lora)
post = post_denoise_ms(pipe)
with tempfile.TemporaryDirectory(prefix="likeness-gpu-model-") as folder:
    pipe.save_pretrained(folder, safe_serialization=True)
    vocabulary = tiny_vocabulary()
    (Path(folder) / "tokenizer" / "vocab.json").write_text(vocabulary.vocab_json(), encoding="utf-8")
    (Path(folder) / "tokenizer" / "merges.txt").write_text(vocabulary.merges_txt(), encoding="utf-8")
    del pipe
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()
    loads = []
    for _ in range(2):
        sync()
        began = time.perf_counter()
        loaded = load_pipeline(Path(folder), DEVICE)
        sync()
        loads.append(time.perf_counter() - began)
        del loaded
switch_s, load_s = statistics.median(switches), statistics.median(loads)

print(f"\nrenderer on {device_name}: SD 1.5-shaped, {RESOLUTION} px, {str(DTYPE).removeprefix('torch.')}, "
      f"{STEPS} steps ({style.scheduler}), LoRA rank {LORA_RANK} merged")
print(f"{'batch':>6} {'images/s':>10} {'s/image':>9}")
for batch, rate in rates.items():
    print(f"{batch:>6} {rate:>10.2f} {1 / rate:>9.3f}")
print(f"LoRA switch {switch_s * 1000:.1f} ms, full pipeline load {load_s * 1000:.0f} ms "
      f"({load_s / switch_s:.0f}x), weights restored exactly: {restored}")
of_vanilla = unet_rates["ours"] / unet_rates["vanilla"]
print(f"UNet at batch 1: ours {unet_rates['ours']:.2f} steps/s, vanilla diffusers {unet_rates['vanilla']:.2f} "
      f"steps/s: {of_vanilla:.2f} of it (goal >= {GOAL_UNET_OF_VANILLA})")
print(f"after denoising, per image: decode {post['decode_ms']} ms + marks and sealing {post['mark_and_seal_ms']} ms "
      f"= {post['ms_per_image']} ms (goal < {GOAL_POST_DENOISE_MS:.0f} ms; C2PA {'on' if post['c2pa'] else 'unavailable'})")
peak = torch.cuda.max_memory_allocated() / 2**30 if DEVICE.type == "cuda" else 0.0
print(json.dumps({
    "bench": "gpu_renderer",
    "device": device_name,
    "dry_run": DRY_RUN,
    "resolution": RESOLUTION,
    "steps": STEPS,
    "dtype": str(DTYPE).removeprefix("torch."),
    "images_per_s": {str(batch): round(rate, 3) for batch, rate in rates.items()},
    "batch8_vs_batch1": round(rates[8] / rates[1], 2),
    "lora_switch_ms": round(switch_s * 1000, 1),
    "pipeline_load_ms": round(load_s * 1000, 1),
    "switch_vs_load": round(load_s / switch_s, 1),
    "restored_exactly": restored,
    "peak_gpu_memory_gib": round(peak, 2),
    "unet_steps_per_s_batch1": {name: round(rate, 2) for name, rate in unet_rates.items()},
    "unet_of_vanilla": round(of_vanilla, 3),
    "post_denoise": post,
    "goals": {"unet_of_vanilla": GOAL_UNET_OF_VANILLA, "post_denoise_ms": GOAL_POST_DENOISE_MS},
    "seconds": round(time.perf_counter() - started, 1),
}))
PY
