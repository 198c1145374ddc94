"""A diffusers Stable Diffusion pipeline as one single-file checkpoint in the original LDM/CompVis key
layout (`model.diffusion_model.*`, `first_stage_model.*`, and `cond_stage_model.transformer.*` for SD 1.x's
CLIP or SDXL's `conditioner.embedders.0.transformer.*` (CLIP) and `conditioner.embedders.1.model.*`
(OpenCLIP)): the form most base weights are published in. `likeness model import` must turn such a file
back into a diffusers directory that renders the same images; this writes one from a directory whose
images are known (the tiny models), so that round trip is tested offline.

The key mapping is the LDM layout written out from its structure: each UNet level holds
`layers_per_block` (resnet, attention) pairs, then a downsampler, numbered consecutively from
`input_blocks.1` (`input_blocks.0` is conv_in); on the way up each level holds one pair more, numbered
from `output_blocks.0`, its upsampler beside the last pair; VAE levels go by `down.i`/`up.i` (the decoder
numbered in reverse), with 1x1 convolutions where diffusers has linear attention projections; OpenCLIP
stacks q, k and v into one `in_proj` and stores its projection transposed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from safetensors.torch import save_file

UNET = "model.diffusion_model."
VAE = "first_stage_model."
TEXT_ENCODER = "cond_stage_model.transformer."
SDXL_TEXT_ENCODER = "conditioner.embedders.0.transformer."
SDXL_TEXT_ENCODER_2 = "conditioner.embedders.1.model."

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_FIXED = {
    "encoder.conv_norm_out": "encoder.norm_out",
    "decoder.conv_norm_out": "decoder.norm_out",
    **{name: name for name in ("quant_conv", "post_quant_conv")},
    **{
        f"{part}.{conv}": f"{part}.{conv}"
        for part in ("encoder", "decoder")
        for conv in ("conv_in", "conv_out")
    },
}


def _unet_modules(config: Mapping[str, object]) -> dict[str, tuple[str, dict[str, str]]]:
    """diffusers module prefix -> (LDM module prefix, renames inside the module)."""
    levels = len(config["block_out_channels"])  # type: ignore[arg-type]
    per_level = int(config["layers_per_block"])  # type: ignore[call-overload]
    modules: dict[str, tuple[str, dict[str, str]]] = {k: (v, {}) for k, v in _UNET_FIXED.items()}
    for level in range(levels):
        for layer in range(per_level):
            block = 1 + level * (per_level + 1) + layer
            modules[f"down_blocks.{level}.resnets.{layer}"] = (f"input_blocks.{block}.0", _RESNET)
            modules[f"down_blocks.{level}.attentions.{layer}"] = (f"input_blocks.{block}.1", {})
        if level < levels - 1:
            block = 1 + level * (per_level + 1) + per_level
            modules[f"down_blocks.{level}.downsamplers.0.conv"] = (f"input_blocks.{block}.0.op", {})
        for layer in range(per_level + 1):
            block = level * (per_level + 1) + layer
            modules[f"up_blocks.{level}.resnets.{layer}"] = (f"output_blocks.{block}.0", _RESNET)
            modules[f"up_blocks.{level}.attentions.{layer}"] = (f"output_blocks.{block}.1", {})
    modules["mid_block.resnets.0"] = ("middle_block.0", _RESNET)
    modules["mid_block.attentions.0"] = ("middle_block.1", {})
    modules["mid_block.resnets.1"] = ("middle_block.2", _RESNET)
    return modules


def _upsampler(name: str, state: Mapping[str, torch.Tensor], per_level: int) -> str | None:
    """The LDM key of an up block's upsampler: after the level's last pair (index 2 when it has an
    attention, 1 when not)."""
    parts = name.split(".")
    if parts[0] != "up_blocks" or parts[2] != "upsamplers":
        return None
    level = int(parts[1])
    block = level * (per_level + 1) + per_level
    has_attention = any(k.startswith(f"up_blocks.{level}.attentions.") for k in state)
    return f"output_blocks.{block}.{2 if has_attention else 1}.conv.{parts[-1]}"


def _rename(name: str, modules: Mapping[str, tuple[str, Mapping[str, str]]]) -> str:
    for prefix in sorted(modules, key=len, reverse=True):
        if name.startswith(prefix + "."):
            target, inner = modules[prefix]
            rest = name[len(prefix) + 1 :]
            for old, new in inner.items():
                if rest.startswith(old + "."):
                    rest = new + rest[len(old) :]
                    break
            return f"{target}.{rest}"
    raise KeyError(f"no LDM name for {name}")


def unet_to_ldm(state: Mapping[str, torch.Tensor], config: Mapping[str, object]) -> dict[str, torch.Tensor]:
    modules = _unet_modules(config)
    per_level = int(config["layers_per_block"])  # type: ignore[call-overload]
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        key = _upsampler(name, state, per_level) or _rename(name, modules)
        out[UNET + key] = tensor
    return out


def _vae_modules(levels: int) -> dict[str, tuple[str, dict[str, str]]]:
    modules: dict[str, tuple[str, dict[str, str]]] = {k: (v, {}) for k, v in _VAE_FIXED.items()}
    for part in ("encoder", "decoder"):
        modules[f"{part}.mid_block.resnets.0"] = (f"{part}.mid.block_1", _VAE_RESNET)
        modules[f"{part}.mid_block.resnets.1"] = (f"{part}.mid.block_2", _VAE_RESNET)
        modules[f"{part}.mid_block.attentions.0"] = (f"{part}.mid.attn_1", _VAE_ATTENTION)
    for level in range(levels):
        up = levels - 1 - level  # the LDM decoder counts its levels from the bottom
        modules[f"encoder.down_blocks.{level}.downsamplers.0.conv"] = (
            f"encoder.down.{level}.downsample.conv",
            {},
        )
        modules[f"decoder.up_blocks.{level}.upsamplers.0.conv"] = (f"decoder.up.{up}.upsample.conv", {})
        for layer in range(8):  # more than any VAE has; only the present ones are looked up
            modules[f"encoder.down_blocks.{level}.resnets.{layer}"] = (
                f"encoder.down.{level}.block.{layer}",
                _VAE_RESNET,
            )
            modules[f"decoder.up_blocks.{level}.resnets.{layer}"] = (
                f"decoder.up.{up}.block.{layer}",
                _VAE_RESNET,
            )
    return modules


def vae_to_ldm(state: Mapping[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    modules = _vae_modules(levels)
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        key = _rename(name, modules)
        if ".mid.attn_1." in key and key.endswith(".weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        out[VAE + key] = tensor
    return out


def _hf_clip(prefix: str, encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CLIP text encoder in the Hugging Face layout under prefix (published checkpoints hold it under
    `text_model.`; transformers 5 names CLIPTextModel's weights without it)."""
    return {
        prefix + (name if name.startswith("text_model.") else f"text_model.{name}"): tensor
        for name, tensor in encoder.state_dict().items()
    }


_OPEN_CLIP_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_OPEN_CLIP_FIXED = {
    "embeddings.position_embedding.weight": "positional_embedding",
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}


def _open_clip(prefix: str, encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """SDXL's second encoder in OpenCLIP's layout: q, k and v stacked into one `in_proj`, the projection a
    transposed matrix, the layers under `transformer.resblocks`."""
    state = {name.removeprefix("text_model."): t for name, t in encoder.state_dict().items()}
    out = {prefix + "text_projection": state.pop("text_projection.weight").T.contiguous()}
    for name, target in _OPEN_CLIP_FIXED.items():
        out[prefix + target] = state.pop(name)
    layers = {int(name.split(".")[2]) for name in state if name.startswith("encoder.layers.")}
    for index in sorted(layers):
        source, target = f"encoder.layers.{index}.", f"{prefix}transformer.resblocks.{index}."
        for kind in ("weight", "bias"):
            stacked = [state.pop(f"{source}self_attn.{part}_proj.{kind}") for part in ("q", "k", "v")]
            out[f"{target}attn.in_proj_{kind}"] = torch.cat(stacked)
        for old, new in _OPEN_CLIP_LAYER.items():
            for kind in ("weight", "bias"):
                out[f"{target}{new}.{kind}"] = state.pop(f"{source}{old}.{kind}")
    if state:
        raise KeyError(f"no OpenCLIP name for {sorted(state)[:3]}")
    return out


def pipeline_to_ldm(pipe: DiffusionPipeline) -> dict[str, torch.Tensor]:
    """Every weight of an SD 1.x/2.x (one CLIP encoder) or SDXL pipeline under its LDM key."""
    checkpoint = unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config)
    checkpoint |= vae_to_ldm(pipe.vae.state_dict(), len(pipe.vae.config.block_out_channels))
    second = getattr(pipe, "text_encoder_2", None)
    if second is None:
        checkpoint |= _hf_clip(TEXT_ENCODER, pipe.text_encoder)
    else:
        checkpoint |= _hf_clip(SDXL_TEXT_ENCODER, pipe.text_encoder)
        checkpoint |= _open_clip(SDXL_TEXT_ENCODER_2, second)
    return {key: tensor.detach().contiguous().clone() for key, tensor in checkpoint.items()}


def export_single_file(model_dir: Path, out_file: Path) -> Path:
    """Writes model_dir's weights as one LDM-layout `.safetensors` checkpoint (configs not included)."""
    pipe = DiffusionPipeline.from_pretrained(str(model_dir), local_files_only=True, use_safetensors=True)
    save_file(pipeline_to_ldm(pipe), str(out_file))
    return out_file
