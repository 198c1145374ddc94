"""A tiny random-weight IP-Adapter plus-face for tests and the dev stack, of the real architecture and file
layout (`likeness_ml.identity_adapter`), so it loads through the same code path as real weights.

It is shaped for one base model (its UNet's attention widths and cross-attention dimension), so a tiny SD
1.5 and a tiny SDXL model each get their own. The same seed and base model give byte-identical files,
pinned by a `likeness-manifest.json` marked tiny (which production refuses).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.embeddings import IPAdapterPlusImageProjection
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from likeness_ml.identity_adapter import ADAPTER_WEIGHTS, IMAGE_ENCODER_FOLDER
from likeness_ml.model_manifest import write_manifest
from likeness_ml.pipeline_layout import detect_family
from likeness_ml.tiny_manifest import TINY_LICENCE, TINY_SOURCE

_VISION_WIDTH = 32
_IMAGE_SIDE = 32  # 4x4 patches of 8 px + the class token: 17 hidden states per image
_RESAMPLER_WIDTH = 64  # diffusers reads the head count as to_q rows // 64: one head
_QUERIES = 4  # image tokens the projection yields (16 for the real plus-face)
_DEPTH = 4  # the plus projection's layer count, which diffusers' converter expects


def write_tiny_identity_adapter(out_dir: Path, base_model_dir: Path, seed: int = 0) -> Path:
    """Writes a tiny adapter fitting the base model in base_model_dir (a diffusers pipeline directory)."""
    family = detect_family(base_model_dir)
    if family is None:
        raise ValueError(f"{base_model_dir} is not a diffusers pipeline directory")
    unet_config = UNet2DConditionModel.load_config(str(base_model_dir / "unet"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = _tiny_image_encoder()
        torch.manual_seed(seed + 2)
        attention = _ip_attention_weights(UNet2DConditionModel.from_config(unet_config))
    projection = tiny_projection(int(unet_config["cross_attention_dim"]), seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(out_dir / IMAGE_ENCODER_FOLDER)
    tensors = {f"image_proj.{k}": v for k, v in _original_layout(projection.state_dict()).items()}
    tensors.update({f"ip_adapter.{k}": v for k, v in attention.items()})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out_dir / ADAPTER_WEIGHTS))
    write_manifest(
        out_dir,
        family=family,
        tiny=True,
        source=TINY_SOURCE,
        licence=TINY_LICENCE,
        seed=seed,
        weights="identity_adapter",
        variant="ip-adapter-plus-face",
    )
    return out_dir


def tiny_projection(cross_attention_dim: int, seed: int = 0) -> IPAdapterPlusImageProjection:
    """The tiny adapter's plus projection in diffusers' own form, as written for seed (tests compare what
    diffusers loads back from the checkpoint layout against it)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        return IPAdapterPlusImageProjection(
            embed_dims=_VISION_WIDTH,
            output_dims=cross_attention_dim,
            hidden_dims=_RESAMPLER_WIDTH,
            heads=1,
            num_queries=_QUERIES,
            depth=_DEPTH,
        )


def _tiny_image_encoder() -> CLIPVisionModelWithProjection:
    config = CLIPVisionConfig(
        hidden_size=_VISION_WIDTH,
        intermediate_size=37,
        projection_dim=_VISION_WIDTH,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=_IMAGE_SIDE,
        patch_size=8,
        layer_norm_eps=1e-5,
    )
    return CLIPVisionModelWithProjection(config).eval()


def _ip_attention_weights(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """`<n>.to_k_ip.weight` / `<n>.to_v_ip.weight` per cross-attention layer, numbered as the original
    checkpoints are (1, 3, 5, ... over the UNet's attention processors that are cross-attention)."""
    widths = dict(_processor_widths(unet))
    cross_dim = int(unet.config.cross_attention_dim)
    weights: dict[str, torch.Tensor] = {}
    number = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        for kind in ("to_k_ip", "to_v_ip"):
            weights[f"{number}.{kind}.weight"] = torch.nn.Linear(cross_dim, widths[name], bias=False).weight
        number += 2
    return {name: tensor.detach() for name, tensor in weights.items()}


def _processor_widths(unet: UNet2DConditionModel) -> Iterator[tuple[str, int]]:
    """Each attention processor's hidden width: its block's channel count."""
    channels = list(unet.config.block_out_channels)
    for name in unet.attn_processors:
        if name.startswith("mid_block"):
            yield name, channels[-1]
        elif name.startswith("up_blocks"):
            yield name, list(reversed(channels))[int(name.split(".")[1])]
        else:
            yield name, channels[int(name.split(".")[1])]


# diffusers' module names of the plus projection -> the original IP-Adapter checkpoint's (the format
# published weights come in, which load_ip_adapter converts back).
_ORIGINAL_NAMES = (
    (r"^layers\.(\d+)\.ln0\.", r"layers.\1.0.norm1."),
    (r"^layers\.(\d+)\.ln1\.", r"layers.\1.0.norm2."),
    (r"^layers\.(\d+)\.attn\.to_q\.", r"layers.\1.0.to_q."),
    (r"^layers\.(\d+)\.attn\.to_out\.0\.", r"layers.\1.0.to_out."),
    (r"^layers\.(\d+)\.ff\.0\.", r"layers.\1.1.0."),
    (r"^layers\.(\d+)\.ff\.1\.net\.0\.proj\.", r"layers.\1.1.1."),
    (r"^layers\.(\d+)\.ff\.1\.net\.2\.", r"layers.\1.1.3."),
)


def _original_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The projection's weights under the original checkpoint's names (keys and values fused as to_kv)."""
    original: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        keys = re.match(r"^layers\.(\d+)\.attn\.to_k\.weight$", name)
        if keys:
            values = state[f"layers.{keys.group(1)}.attn.to_v.weight"]
            original[f"layers.{keys.group(1)}.0.to_kv.weight"] = torch.cat([tensor, values])
            continue
        if re.match(r"^layers\.\d+\.attn\.to_v\.weight$", name):
            continue
        for pattern, replacement in _ORIGINAL_NAMES:
            name = re.sub(pattern, replacement, name)
        original[name] = tensor.detach()
    return original
