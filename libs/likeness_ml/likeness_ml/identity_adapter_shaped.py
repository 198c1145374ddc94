"""IP-Adapter plus-face with its published architecture and random weights, for GPU benchmarks.

The full-size counterpart of ``tiny_identity_adapter`` (same file layout, same original checkpoint key
names, loaded by the same ``likeness_ml.identity_adapter.load_identity_adapter``): the image encoder is
OpenCLIP ViT-H/14 (32 layers of width 1280, 224 px, 632M parameters), as both ``ip-adapter-plus-face_sd15``
and ``ip-adapter-plus-face_sdxl_vit-h`` use, and the "plus" resampler has 16 queries, depth 4 and the
published widths: 768 with 12 heads for SD 1.5, 1280 with 20 heads for SDXL, projecting to the base UNet's
cross-attention width. What instant mode's time to the first headshots costs depends on these shapes,
not on the values. Written in the base model's dtype (bf16 on a GPU: 1.3 GB instead of 2.5 GB to write
and read). No manifest: this never reaches a worker, only a benchmark's own process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.embeddings import IPAdapterPlusImageProjection
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from likeness_ml.identity_adapter import ADAPTER_WEIGHTS, IMAGE_ENCODER_FOLDER

# The original converter's key names; shared with the tiny adapter so both files read the same way.
from likeness_ml.tiny_identity_adapter import _original_layout

_VIT_H = CLIPVisionConfig(
    hidden_size=1280,
    intermediate_size=5120,
    projection_dim=1024,
    num_hidden_layers=32,
    num_attention_heads=16,
    image_size=224,
    patch_size=14,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
)
_QUERIES = 16
_DEPTH = 4
_HEAD_WIDTH = 64
#: Resampler width by the base UNet's cross-attention width (SD 1.5: 768, SDXL: 2048).
_RESAMPLER_WIDTH = {768: 768, 2048: 1280}


def write_plus_face_shaped(
    out_dir: Path, unet: UNet2DConditionModel, device: torch.device, dtype: torch.dtype, seed: int = 0
) -> Path:
    """Writes a random plus-face adapter fitting `unet` (SD 1.5- or SDXL-shaped) to out_dir."""
    cross_dim = int(unet.config.cross_attention_dim)
    if cross_dim not in _RESAMPLER_WIDTH:
        raise ValueError(f"no published plus-face shape for a cross-attention width of {cross_dim}")
    width = _RESAMPLER_WIDTH[cross_dim]
    default_dtype = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]), device:
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)  # created in the target dtype, on the device: no fp32 CPU detour
        try:
            encoder = CLIPVisionModelWithProjection(_VIT_H).eval()
            projection = IPAdapterPlusImageProjection(
                embed_dims=_VIT_H.hidden_size,
                output_dims=cross_dim,
                hidden_dims=width,
                heads=width // _HEAD_WIDTH,
                num_queries=_QUERIES,
                depth=_DEPTH,
            )
            attention = _ip_attention_weights(unet)
        finally:
            torch.set_default_dtype(default_dtype)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(out_dir / IMAGE_ENCODER_FOLDER)
    tensors = {f"image_proj.{k}": v for k, v in _original_layout(projection.state_dict()).items()}
    tensors.update({f"ip_adapter.{k}": v for k, v in attention.items()})
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(out_dir / ADAPTER_WEIGHTS))
    return out_dir


def _ip_attention_weights(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """`<n>.to_k_ip.weight` / `<n>.to_v_ip.weight` per cross-attention processor of the live UNet, numbered
    as the original checkpoints are (1, 3, 5, ...), without building a second UNet."""
    widths = dict(_processor_widths(unet))
    cross_dim = int(unet.config.cross_attention_dim)
    weights: dict[str, torch.Tensor] = {}
    number = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        for kind in ("to_k_ip", "to_v_ip"):
            linear = torch.nn.Linear(cross_dim, widths[name], bias=False)
            weights[f"{number}.{kind}.weight"] = linear.weight.detach()
        number += 2
    return weights


def _processor_widths(unet: UNet2DConditionModel) -> Iterator[tuple[str, int]]:
    channels = list(unet.config.block_out_channels)
    for name in unet.attn_processors:
        if name.startswith("mid_block"):
            yield name, channels[-1]
        elif name.startswith("up_blocks"):
            yield name, list(reversed(channels))[int(name.split(".")[1])]
        else:
            yield name, channels[int(name.split(".")[1])]
