"""A tiny random-weight Stable Diffusion 1.x pipeline, written like a real one so it loads the same way.

Real weights cannot be downloaded in development and CI, so tests and the dev stack use this: the same
classes and directory layout as SD 1.5 (``StableDiffusionPipeline.save_pretrained``), loaded with the same
``from_pretrained`` call, but with diffusers-test-sized configs (≈2M parameters, 64x64 images) so CPU
training and rendering take seconds. The same seed always gives byte-identical files, pinned by the
``likeness-manifest.json`` every pinned weight has (`likeness_ml.model_manifest`), marked ``"tiny": true``
(which production refuses).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from likeness_ml.tiny_manifest import (
    TINY_MANIFEST_FORMAT,
    TINY_MANIFEST_NAME,
    is_tiny_model,
    read_tiny_manifest,
    write_tiny_manifest,
)
from likeness_ml.tiny_tokenizer import END_OF_TEXT, MODEL_MAX_LENGTH, START_OF_TEXT, tiny_vocabulary

_LATENT_SIZE = 32  # x2 VAE downscale (two blocks) => 64x64 images
_TEXT_WIDTH = 32


def build_tiny_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """The tiny pipeline in memory. Each component draws from its own seeded RNG, in a fixed order."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _tiny_unet()
        torch.manual_seed(seed + 1)
        vae = _tiny_vae()
        tokenizer = clip_tokenizer()
        torch.manual_seed(seed + 2)
        text_encoder = _tiny_text_encoder(tokenizer)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sd15_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def write_tiny_pipeline(out_dir: Path, seed: int = 0) -> Path:
    """Write the tiny pipeline (plus tokenizer vocab/merges and the manifest) to out_dir; returns out_dir."""
    return save_tiny_pipeline(build_tiny_pipeline(seed), out_dir, seed, ("tokenizer",))


def save_tiny_pipeline(
    pipe: DiffusionPipeline, out_dir: Path, seed: int, tokenizer_folders: tuple[str, ...]
) -> Path:
    """save_pretrained plus the classic tokenizer files and the tiny model's manifest (family detected
    from the configs written: a tiny SD model pins as sd15, a tiny SDXL one as sdxl)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    # transformers 5 saves only tokenizer.json; the classic files keep the directory loadable by any
    # CLIPTokenizer (and document the vocabulary in the form CLIP ships it).
    vocabulary = tiny_vocabulary()
    for folder in tokenizer_folders:
        (out_dir / folder / "vocab.json").write_text(vocabulary.vocab_json(), encoding="utf-8")
        (out_dir / folder / "merges.txt").write_text(vocabulary.merges_txt(), encoding="utf-8")
    write_tiny_manifest(out_dir, seed)
    return out_dir


def _tiny_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=_LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=_TEXT_WIDTH,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def _tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        sample_size=_LATENT_SIZE * 2,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
    )


def clip_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer over the offline tiny vocabulary (same special tokens and max length as CLIP's)."""
    vocabulary = tiny_vocabulary()
    return CLIPTokenizer(
        vocab=dict(vocabulary.vocab),
        merges=list(vocabulary.merges),
        bos_token=START_OF_TEXT,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        model_max_length=MODEL_MAX_LENGTH,
    )


def _tiny_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=_TEXT_WIDTH,
        intermediate_size=37,
        projection_dim=_TEXT_WIDTH,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MODEL_MAX_LENGTH,
        layer_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config).eval()


def sd15_scheduler() -> PNDMScheduler:
    """Stable Diffusion 1.5's own scheduler config, so the noise schedule matches the real base model."""
    return PNDMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


__all__ = [
    "TINY_MANIFEST_FORMAT",
    "TINY_MANIFEST_NAME",
    "build_tiny_pipeline",
    "is_tiny_model",
    "read_tiny_manifest",
    "save_tiny_pipeline",
    "write_tiny_pipeline",
]
