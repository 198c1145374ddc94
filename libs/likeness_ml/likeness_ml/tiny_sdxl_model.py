"""A tiny random-weight SDXL pipeline, written like a real one so it loads the same way.

The SDXL counterpart of ``tiny_model``: the same classes and directory layout as
``stable-diffusion-xl-base-1.0`` (``StableDiffusionXLPipeline.save_pretrained``: two tokenizers, a
``CLIPTextModel`` and a ``CLIPTextModelWithProjection`` whose projected output is the pooled embedding,
and a UNet with ``addition_embed_type="text_time"`` that takes those pooled embeddings plus the six
size/crop time ids), loaded by the same ``from_pretrained`` call as real weights, with diffusers-test-sized
configs (≈2M parameters, 64x64 images) so CPU training and rendering take seconds. Same seed, same bytes;
pinned by the same ``likeness-manifest.json`` as every pinned weight (``"tiny": true``, family ``sdxl``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from likeness_ml.tiny_model import clip_tokenizer, save_tiny_pipeline
from likeness_ml.tiny_tokenizer import MODEL_MAX_LENGTH

_LATENT_SIZE = 32  # x2 VAE downscale (two blocks) => 64x64 images
_TEXT_WIDTH = 32  # each encoder's; the UNet attends to both, concatenated (64)
_POOLED_WIDTH = 32  # text_encoder_2's projection: the pooled embedding
_TIME_EMBED_WIDTH = 8  # per time id; SDXL has 6 (original size, crop top-left, target size)
_TIME_IDS = 6
_SDXL_VAE_SCALE = 0.13025  # SDXL's VAE latent scaling (SD 1.5: 0.18215)


def build_tiny_sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """The tiny SDXL pipeline in memory. Each component draws from its own seeded RNG, in a fixed order."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _tiny_sdxl_unet()
        torch.manual_seed(seed + 1)
        vae = _tiny_sdxl_vae()
        tokenizer = clip_tokenizer()
        tokenizer_2 = clip_tokenizer()
        torch.manual_seed(seed + 2)
        text_encoder = CLIPTextModel(_text_config(tokenizer, "quick_gelu")).eval()
        torch.manual_seed(seed + 3)
        text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer_2, "gelu")).eval()
    return StableDiffusionXLPipeline(
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


def write_tiny_sdxl_pipeline(out_dir: Path, seed: int = 0) -> Path:
    """Write the tiny SDXL pipeline (tokenizer files and the manifest included) to out_dir."""
    pipe = build_tiny_sdxl_pipeline(seed)
    return save_tiny_pipeline(pipe, out_dir, seed, ("tokenizer", "tokenizer_2"))


def _tiny_sdxl_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=_LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        # SDXL's traits: linear projections in the transformers, deeper transformers at lower resolution,
        # cross-attention to both encoders' hidden states, and the pooled text + time ids added to the
        # timestep embedding.
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2),
        cross_attention_dim=2 * _TEXT_WIDTH,
        addition_embed_type="text_time",
        addition_time_embed_dim=_TIME_EMBED_WIDTH,
        projection_class_embeddings_input_dim=_TIME_IDS * _TIME_EMBED_WIDTH + _POOLED_WIDTH,
        norm_num_groups=32,
    )


def _tiny_sdxl_vae() -> AutoencoderKL:
    return AutoencoderKL(
        sample_size=_LATENT_SIZE * 2,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
        scaling_factor=_SDXL_VAE_SCALE,
        force_upcast=True,
    )


def _text_config(tokenizer: CLIPTokenizer, activation: str) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=_TEXT_WIDTH,
        intermediate_size=37,
        projection_dim=_POOLED_WIDTH,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MODEL_MAX_LENGTH,
        hidden_act=activation,  # CLIP ViT-L: quick_gelu; OpenCLIP bigG: gelu
        layer_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def sdxl_scheduler() -> EulerDiscreteScheduler:
    """SDXL base 1.0's own scheduler config, so the noise schedule matches the real base model."""
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
        interpolation_type="linear",
        prediction_type="epsilon",
        use_karras_sigmas=False,
    )
