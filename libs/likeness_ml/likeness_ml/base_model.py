"""Loading the resident base model (one per worker process), and facts about it for trainers and renderers."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from diffusers import StableDiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor2_0

BaseFamily = Literal["tiny", "sd15", "sd2", "sdxl"]

# cross_attention_dim identifies the text encoder a UNet was trained against.
_FAMILY_BY_TEXT_WIDTH: dict[int, BaseFamily] = {768: "sd15", 1024: "sd2"}


def select_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def dtype_for(device: torch.device) -> torch.dtype:
    # bf16 on GPUs: same range as fp32 (no fp16 VAE/attention overflow) at half the memory. CPUs: fp32,
    # since bf16 matmuls there are slow and not bit-reproducible across CPU kinds.
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def enable_tf32() -> None:
    """Let fp32 matmuls and convolutions (LoRA params, optimizer, scheduler maths) use TF32 tensor cores."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def load_pipeline(path: Path, device: torch.device | None = None) -> StableDiffusionPipeline:
    """Load a local diffusers SD pipeline for inference/training on device (default: select_device())."""
    if not path.is_dir():
        # Checked here: diffusers would take a missing local path for a Hub repo id.
        raise FileNotFoundError(f"base model directory not found: {path}")
    device = device or select_device()
    pipe = StableDiffusionPipeline.from_pretrained(
        str(path),
        dtype=dtype_for(device),
        local_files_only=True,  # never reach for the Hub: the weights are provisioned, pinned files
        use_safetensors=True,  # never unpickle
    )
    pipe = pipe.to(device)
    use_sdpa_attention(pipe)
    for model in (pipe.unet, pipe.vae, pipe.text_encoder):
        model.eval()
        model.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    if device.type == "cuda":
        enable_tf32()
    return pipe


def use_sdpa_attention(pipe: StableDiffusionPipeline) -> None:
    """Pin torch's scaled_dot_product_attention (flash / memory-efficient kernels) for UNet and VAE.

    diffusers picks AttnProcessor2_0 by default on torch 2, but a checkpoint or earlier call may have set
    another processor; setting it explicitly makes the choice visible and testable.
    """
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.vae.set_attn_processor(AttnProcessor2_0())


def native_resolution(pipe: StableDiffusionPipeline) -> int:
    """The image side the base model was trained at: UNet latent size x VAE downscale (SD1.5: 64x8=512)."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)


def detect_family(pipe: StableDiffusionPipeline) -> BaseFamily:
    """Which base-model family a pipeline belongs to (selects training presets and LoRA compatibility)."""
    config = pipe.unet.config
    if config.addition_embed_type == "text_time":
        return "sdxl"
    family = _FAMILY_BY_TEXT_WIDTH.get(int(config.cross_attention_dim))
    if family is not None:
        return family
    if native_resolution(pipe) <= 128:
        return "tiny"
    raise ValueError(f"unsupported base model (cross_attention_dim={config.cross_attention_dim})")
