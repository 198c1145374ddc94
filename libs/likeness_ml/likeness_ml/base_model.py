"""Loading the resident base model (one per worker process), and facts about it for trainers and renderers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, TypeAlias

import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.models.attention_processor import AttnProcessor2_0

#: tiny / tiny_sdxl: the random-weight development models shaped like SD 1.5 / SDXL (see ``shaped_like``).
BaseFamily = Literal["tiny", "tiny_sdxl", "sd15", "sd2", "sdxl"]
#: Either pipeline class a worker keeps resident; both take the same generation arguments.
BasePipeline: TypeAlias = StableDiffusionPipeline | StableDiffusionXLPipeline

# cross_attention_dim identifies the text encoder a UNet was trained against.
_FAMILY_BY_TEXT_WIDTH: dict[int, BaseFamily] = {768: "sd15", 1024: "sd2"}
# A tiny model behaves like the real family it imitates wherever the family picks a code path or a tuning.
_SHAPED_LIKE: dict[BaseFamily, BaseFamily] = {"tiny": "sd15", "tiny_sdxl": "sdxl"}
# model_index.json's _class_name -> the class that loads it. Nothing else is loaded: an unknown pipeline
# class (or a hub-style custom one) is refused rather than guessed at.
_PIPELINE_CLASSES: dict[str, type[BasePipeline]] = {
    "StableDiffusionPipeline": StableDiffusionPipeline,
    "StableDiffusionXLPipeline": StableDiffusionXLPipeline,
}


def select_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def dtype_for(device: torch.device) -> torch.dtype:
    # bf16 on GPUs: same range as fp32 (no fp16 VAE/attention overflow, which SDXL's VAE is known for) at
    # half the memory. CPUs: fp32, since bf16 matmuls there are slow and not bit-reproducible across CPU
    # kinds. A GPU without bf16 (pre-Ampere) also gets fp32: fp16 would need loss scaling and VAE upcasts.
    if device.type != "cuda":
        return torch.float32
    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return torch.float32
    return torch.bfloat16


def enable_tf32() -> None:
    """Let fp32 matmuls and convolutions (LoRA params, optimizer, scheduler maths) use TF32 tensor cores."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def pipeline_class_for(path: Path) -> type[BasePipeline]:
    """The pipeline class a local diffusers directory declares (SD 1.x/2.x or SDXL), from model_index.json."""
    if not path.is_dir():
        # Checked here: diffusers would take a missing local path for a Hub repo id.
        raise FileNotFoundError(f"base model directory not found: {path}")
    try:
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as unreadable:
        raise ValueError(
            f"{path} has no readable model_index.json (not a diffusers pipeline)"
        ) from unreadable
    class_name = index.get("_class_name") if isinstance(index, dict) else None
    if class_name not in _PIPELINE_CLASSES:
        known = ", ".join(_PIPELINE_CLASSES)
        raise ValueError(f"{path} holds a {class_name!r} pipeline; supported: {known}")
    return _PIPELINE_CLASSES[class_name]


def load_pipeline(path: Path, device: torch.device | None = None) -> BasePipeline:
    """Load a local diffusers SD or SDXL pipeline for inference/training on device (default:
    select_device()); the class comes from the directory itself (``pipeline_class_for``)."""
    pipeline_class = pipeline_class_for(path)
    device = device or select_device()
    # SDXL's pipeline would add an invisible pixel watermark when that package happens to be installed;
    # outputs are marked by the renderer (IPTC, C2PA) whatever the environment.
    sdxl_options = {"add_watermarker": False} if pipeline_class is StableDiffusionXLPipeline else {}
    pipe = pipeline_class.from_pretrained(
        str(path),
        dtype=dtype_for(device),
        local_files_only=True,  # never reach for the Hub: the weights are provisioned, pinned files
        use_safetensors=True,  # never unpickle
        **sdxl_options,
    )
    pipe = pipe.to(device)
    use_sdpa_attention(pipe)
    for model in frozen_models(pipe):
        model.eval()
        model.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    if device.type == "cuda":
        enable_tf32()
    return pipe


def text_encoders(pipe: BasePipeline) -> list[torch.nn.Module]:
    """The pipeline's text encoders: one for SD 1.x/2.x, two for SDXL (CLIP ViT-L and OpenCLIP bigG)."""
    return [
        encoder
        for encoder in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None))
        if encoder is not None
    ]


def frozen_models(pipe: BasePipeline) -> list[torch.nn.Module]:
    """Every base-model network of the pipeline (never trained: LoRA layers are added on top)."""
    return [pipe.unet, pipe.vae, *text_encoders(pipe)]


def is_sdxl(pipe: BasePipeline) -> bool:
    """SDXL conditioning (two encoders, pooled embeddings, size/crop time ids) instead of SD 1.x/2.x's."""
    return isinstance(pipe, StableDiffusionXLPipeline)


def use_sdpa_attention(pipe: BasePipeline) -> None:
    """Pin torch's scaled_dot_product_attention (flash / memory-efficient kernels) for UNet and VAE.

    diffusers picks AttnProcessor2_0 by default on torch 2, but a checkpoint or earlier call may have set
    another processor; setting it explicitly makes the choice visible and testable.
    """
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.vae.set_attn_processor(AttnProcessor2_0())


def native_resolution(pipe: BasePipeline) -> int:
    """The image side the base model was trained at: UNet latent size x VAE downscale (SD1.5: 64x8=512)."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)


def detect_family(pipe: BasePipeline) -> BaseFamily:
    """Which base-model family a pipeline belongs to (selects training presets and LoRA compatibility)."""
    config = pipe.unet.config
    if config.addition_embed_type == "text_time":
        return "tiny_sdxl" if native_resolution(pipe) <= 128 else "sdxl"
    family = _FAMILY_BY_TEXT_WIDTH.get(int(config.cross_attention_dim))
    if family is not None:
        return family
    if native_resolution(pipe) <= 128:
        return "tiny"
    raise ValueError(f"unsupported base model (cross_attention_dim={config.cross_attention_dim})")


def shaped_like(family: BaseFamily) -> BaseFamily:
    """The production family a (tiny) family stands in for: per-family style tuning is chosen by it."""
    return _SHAPED_LIKE.get(family, family)
