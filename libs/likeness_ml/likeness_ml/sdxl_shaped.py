"""SDXL base 1.0's architecture with random weights, built directly on the GPU, for benchmarks.

The SDXL counterpart of ``sd15_shaped``: real weights cannot be downloaded here, and what a training step or
a denoising step costs depends on the shapes, not on the values. ``sdxl_shaped_pipeline()`` is
``stable-diffusion-xl-base-1.0`` as configured in its ``unet/``, ``vae/``, ``text_encoder/`` and
``text_encoder_2/`` configs: a 2.57B-parameter UNet (320/640/1280 channels, 1/2/10 transformer layers per
level, linear projections, 2048-wide cross-attention to both encoders, pooled text + six time ids added to
the timestep embedding), the SD VAE with SDXL's latent scaling, CLIP ViT-L/14 and OpenCLIP bigG/14 (32
layers of width 1280, whose projection is the pooled embedding). Both tokenizers are the offline
development one, so the embedding tables are smaller than the real 49408 rows: per-token compute is the
same. There is no narrowed variant: the CPU dry runs use the tiny SDXL model (``tiny_sdxl_model``), which
goes through the same code paths.

Built under ``torch.device(device)``, so 3.5B parameters are never materialised on the CPU first.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from likeness_ml.tiny_model import clip_tokenizer
from likeness_ml.tiny_sdxl_model import sdxl_scheduler
from likeness_ml.tiny_tokenizer import MODEL_MAX_LENGTH

SDXL_RESOLUTION = 1024
_VAE_DOWNSCALE = 8


def unet_config(resolution: int = SDXL_RESOLUTION) -> dict[str, Any]:
    """stable-diffusion-xl-base-1.0/unet/config.json (sample_size from the resolution)."""
    return {
        "sample_size": resolution // _VAE_DOWNSCALE,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        "block_out_channels": (320, 640, 1280),
        "layers_per_block": 2,
        "transformer_layers_per_block": (1, 2, 10),
        # diffusers' name for SDXL's head counts (head width 64 everywhere).
        "attention_head_dim": (5, 10, 20),
        "use_linear_projection": True,
        "cross_attention_dim": 2048,  # 768 (ViT-L) + 1280 (bigG), concatenated
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,  # 6 time ids x 256 + the 1280-wide pooled text
        "norm_num_groups": 32,
        "norm_eps": 1e-5,
        "act_fn": "silu",
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    }


def vae_config(resolution: int = SDXL_RESOLUTION) -> dict[str, Any]:
    """stable-diffusion-xl-base-1.0/vae/config.json: SD's VAE layout with SDXL's latent scaling."""
    return {
        "sample_size": resolution,
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "act_fn": "silu",
        "scaling_factor": 0.13025,
        "force_upcast": True,
    }


def text_configs(tokenizer: CLIPTokenizer) -> tuple[CLIPTextConfig, CLIPTextConfig]:
    """CLIP ViT-L/14's text tower and OpenCLIP bigG/14's, as SDXL configures them."""
    common: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "max_position_embeddings": MODEL_MAX_LENGTH,
        "layer_norm_eps": 1e-5,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vit_l = CLIPTextConfig(
        hidden_size=768,
        intermediate_size=3072,
        projection_dim=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        hidden_act="quick_gelu",
        **common,
    )
    big_g = CLIPTextConfig(
        hidden_size=1280,
        intermediate_size=5120,
        projection_dim=1280,
        num_hidden_layers=32,
        num_attention_heads=20,
        hidden_act="gelu",
        **common,
    )
    return vit_l, big_g


def sdxl_shaped_pipeline(
    resolution: int = SDXL_RESOLUTION,
    seed: int = 0,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> StableDiffusionXLPipeline:
    """A random-weight SDXL-shaped pipeline, built on `device` in `dtype`, frozen and in eval mode."""
    device = device or torch.device("cpu")
    tokenizer, tokenizer_2 = clip_tokenizer(), clip_tokenizer()
    vit_l, big_g = text_configs(tokenizer)
    default_dtype = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]), device:
        torch.manual_seed(seed)
        # Created in the target dtype: an fp32 SDXL would take 14 GB before the cast.
        torch.set_default_dtype(dtype)
        try:
            unet = UNet2DConditionModel(**unet_config(resolution))
            vae = AutoencoderKL(**vae_config(resolution))
            text_encoder = CLIPTextModel(vit_l)
            text_encoder_2 = CLIPTextModelWithProjection(big_g)
        finally:
            torch.set_default_dtype(default_dtype)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=sdxl_scheduler(),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,  # outputs are marked by the renderer (IPTC, C2PA), not by a pixel watermark
    )
    for model in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        model.eval()
        model.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
