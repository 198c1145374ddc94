"""Stable Diffusion 1.5's architecture with random weights, optionally narrowed, for benchmarks.

Real weights cannot be downloaded here, and a benchmark of training speed does not need them: the cost of
a step depends on the shapes, not on the values. ``sd15_shaped_pipeline(width_divisor=1)`` is SD 1.5's
UNet, VAE and CLIP text encoder as configured in ``stable-diffusion-v1-5`` (859.5M + 83.7M parameters; the
text encoder has CLIP's 12 layers of width 768 but the offline tokenizer's small vocabulary, so its
embedding table is smaller: the per-token compute is the same).

A larger divisor narrows every channel count by that factor and keeps the block structure: 4 UNet levels
with cross-attention in the first three and 2 layers per block, 4 VAE levels with a mid attention, 12 text
layers. Narrowing drops attention heads rather than shrinking them (SD 1.5's per-head widths stay, so the
attention kernels see the same shapes) and keeps SD 1.5's channels per group norm. Dividing the channels
by 4 and the resolution by 2 divides every convolution (HW*C^2) and attention (HW^2*C) by 64: the same
workload, in the same proportions between UNet and VAE, small enough for a CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from likeness_ml.tiny_model import clip_tokenizer, sd15_scheduler

SD15_RESOLUTION = 512
_VAE_DOWNSCALE = 8

# SD 1.5's own configs (unet/config.json, vae/config.json, text_encoder/config.json), channel counts
# written as SD 1.5 value / width_divisor below.
_UNET_CHANNELS = (320, 640, 1280, 1280)
_UNET_GROUPS = 32
_VAE_CHANNELS = (128, 256, 512, 512)
_VAE_GROUPS = 32
_TEXT_WIDTH = 768
_TEXT_MLP = 3072


def _narrow(channels: int, divisor: int) -> int:
    if channels % divisor:
        raise ValueError(f"width_divisor {divisor} does not divide SD 1.5's {channels} channels")
    return channels // divisor


def _heads(heads: int, divisor: int) -> int:
    if heads % divisor:
        raise ValueError(f"width_divisor {divisor} must divide SD 1.5's {heads} attention heads")
    return heads // divisor


def _groups(divisor: int) -> int:
    # Keeps SD 1.5's channels per group (UNet 10, VAE 4): the normalisation does the same work per group.
    if _UNET_GROUPS % divisor:
        raise ValueError(f"width_divisor {divisor} must divide {_UNET_GROUPS}")
    return _UNET_GROUPS // divisor


def unet_config(width_divisor: int = 1, resolution: int = SD15_RESOLUTION) -> dict[str, Any]:
    return {
        "sample_size": resolution // _VAE_DOWNSCALE,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": (
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        "block_out_channels": tuple(_narrow(c, width_divisor) for c in _UNET_CHANNELS),
        "layers_per_block": 2,
        # diffusers' name for SD 1.x's head count (8). Narrowing drops heads, not head width (40/80/160),
        # so attention kernels see SD 1.5's per-head shapes.
        "attention_head_dim": _heads(8, width_divisor),
        "cross_attention_dim": _narrow(_TEXT_WIDTH, width_divisor),
        "norm_num_groups": _groups(width_divisor),
        "norm_eps": 1e-5,
        "act_fn": "silu",
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    }


def vae_config(width_divisor: int = 1, resolution: int = SD15_RESOLUTION) -> dict[str, Any]:
    return {
        "sample_size": resolution,
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": tuple(_narrow(c, width_divisor) for c in _VAE_CHANNELS),
        "layers_per_block": 2,
        "latent_channels": 4,
        "norm_num_groups": _groups(width_divisor) * _VAE_GROUPS // _UNET_GROUPS,
        "act_fn": "silu",
        "scaling_factor": 0.18215,
    }


def text_config(width_divisor: int, vocab_size: int, bos: int, eos: int, pad: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=_narrow(_TEXT_WIDTH, width_divisor),
        intermediate_size=_narrow(_TEXT_MLP, width_divisor),
        projection_dim=_narrow(_TEXT_WIDTH, width_divisor),
        num_hidden_layers=12,
        num_attention_heads=_heads(12, width_divisor),
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )


def sd15_shaped_pipeline(
    width_divisor: int = 1,
    resolution: int = SD15_RESOLUTION,
    seed: int = 0,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> StableDiffusionPipeline:
    """A random-weight SD 1.5-shaped pipeline, built directly on `device` (no multi-GB CPU detour)."""
    device = device or torch.device("cpu")
    tokenizer = clip_tokenizer()
    with torch.random.fork_rng(devices=[]), device:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**unet_config(width_divisor, resolution))
        vae = AutoencoderKL(**vae_config(width_divisor, resolution))
        text_encoder = CLIPTextModel(
            text_config(
                width_divisor,
                len(tokenizer),
                tokenizer.bos_token_id,
                tokenizer.eos_token_id,
                tokenizer.pad_token_id,
            )
        )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sd15_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if dtype != torch.float32:
        pipe = pipe.to(dtype=dtype)
    for model in (pipe.unet, pipe.vae, pipe.text_encoder):
        model.eval()
        model.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
