"""Hot-swapping a subject's LoRA into the resident UNet: merged into the weights, and exactly undone.

Why merged rather than PEFT adapter layers: a merged LoRA costs nothing per denoising step (no extra
matmuls, no Python per wrapped layer), and a swap is one small matmul and an in-place add per target layer
instead of rebuilding modules. Why exactly undone: before merging, the original weight of every touched
layer is copied aside, and unmerging copies it back; subtracting the delta again would leave float rounding
residue of this person in the shared weights. After a job the UNet is bit-identical to one that never saw
a LoRA (tests compare images bit for bit).

The LoRA comes from bytes in memory (likeness_ml.lora_format), with the rank and alpha from its own
metadata: delta W = (alpha / rank) * up @ down, which is what PEFT computes at run time. A LoRA that also
adapts the text encoders (SD's one, SDXL's two) is merged into their attention projections the same way
and restored the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from likeness_ml.base_model import BasePipeline, detect_family
from likeness_ml.lora_format import LoraMetadata, parse_lora

# The UNet's keys end in .lora.down/.lora.up; diffusers' format for text encoders says lora_linear_layer.
_DOWN = (".lora.down.weight", ".lora_linear_layer.down.weight")
_UP = (".lora.up.weight", ".lora_linear_layer.up.weight")
#: Set on a UNet while a LoRA is merged into it (merges never nest).
_MERGED_FLAG = "_likeness_merged_lora"


@dataclass(frozen=True)
class LoraLayers:
    """A parsed LoRA: per target layer (``<component>.<module path>``, e.g. ``unet.down_blocks...`` or
    ``text_encoder.text_model...``), its (down, up) matrices."""

    metadata: LoraMetadata
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]


def read_lora(lora_safetensors: bytes) -> LoraLayers:
    """Parses and checks the bytes: every layer has a down and an up matrix of the metadata's rank."""
    state_dict, metadata = parse_lora(lora_safetensors)
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in state_dict.items():
        if down_suffix := next((suffix for suffix in _DOWN if name.endswith(suffix)), None):
            halves.setdefault(name.removesuffix(down_suffix), {})["down"] = tensor
        elif up_suffix := next((suffix for suffix in _UP if name.endswith(suffix)), None):
            halves.setdefault(name.removesuffix(up_suffix), {})["up"] = tensor
        else:
            raise ValueError("unexpected tensor in LoRA (only lora.down/lora.up weights are allowed)")
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for path, pair in halves.items():
        if set(pair) != {"down", "up"}:
            raise ValueError("LoRA layer without both halves")
        down, up = pair["down"], pair["up"]
        if down.ndim != 2 or up.ndim != 2 or down.shape[0] != metadata.rank or up.shape[1] != metadata.rank:
            raise ValueError("LoRA layer shapes do not match its rank")
        layers[path] = (down, up)
    return LoraLayers(metadata, layers)


def is_merged(pipe: BasePipeline) -> bool:
    return bool(getattr(pipe.unet, _MERGED_FLAG, False))


@contextlib.contextmanager
def merged_lora(pipe: BasePipeline, lora_safetensors: bytes) -> Iterator[LoraMetadata]:
    """The subject's LoRA merged into pipe's UNet for the block; the original weights restored after."""
    if is_merged(pipe):
        raise RuntimeError("a LoRA is already merged into this pipeline")
    lora = read_lora(lora_safetensors)
    family = detect_family(pipe)
    if lora.metadata.base_family != family:
        raise ValueError(f"LoRA was trained on {lora.metadata.base_family!r}, this pipeline is {family!r}")
    targets = _target_layers(pipe, lora)  # every check before the first weight changes
    originals: dict[str, torch.Tensor] = {}
    setattr(pipe.unet, _MERGED_FLAG, True)
    try:
        with torch.no_grad():
            scale = lora.metadata.scale
            for path, layer in targets.items():
                down, up = lora.layers[path]
                weight = layer.weight
                originals[path] = weight.detach().clone()
                delta = (up.to(weight.device, torch.float32) @ down.to(weight.device, torch.float32)) * scale
                weight.copy_((weight.float() + delta).to(weight.dtype))
        yield lora.metadata
    finally:
        with torch.no_grad():
            for path, original in originals.items():
                targets[path].weight.copy_(original)
        originals.clear()
        setattr(pipe.unet, _MERGED_FLAG, False)


def _target_layers(pipe: BasePipeline, lora: LoraLayers) -> dict[str, torch.nn.Linear]:
    targets: dict[str, torch.nn.Linear] = {}
    for path, (down, up) in lora.layers.items():
        component, _, module_path = path.partition(".")
        model = getattr(pipe, component, None)
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"LoRA adapts a {component} this pipeline does not have")
        try:
            layer = model.get_submodule(module_path)
        except AttributeError:
            raise ValueError("LoRA targets a layer this UNet does not have") from None
        if not isinstance(layer, torch.nn.Linear):
            raise ValueError("LoRA targets a layer that is not linear")
        out_features, in_features = layer.weight.shape
        if down.shape[1] != in_features or up.shape[0] != out_features:
            raise ValueError("LoRA layer shapes do not match the UNet")
        targets[path] = layer
    return targets
