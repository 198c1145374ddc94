"""Putting a subject LoRA onto the resident pipeline and taking it off again without a trace.

Workers keep one base pipeline in memory for many people, so "off again" is a privacy property: after
``detach_lora``/``remove_lora`` the UNet holds no PEFT layers, no adapter config and produces bit-identical
outputs to a pipeline that never saw a LoRA (tests check exactly that).
"""

from __future__ import annotations

import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from peft.tuners.tuners_utils import BaseTunerLayer

from likeness_ml.base_model import detect_family
from likeness_ml.lora_format import LoraMetadata, parse_lora


def has_lora(model: torch.nn.Module) -> bool:
    """Whether any PEFT adapter layer (trained or loaded) is attached anywhere in model."""
    return any(isinstance(module, BaseTunerLayer) for module in model.modules()) or bool(
        getattr(model, "peft_config", None)
    )


def remove_lora(unet: UNet2DConditionModel) -> None:
    """Replace every PEFT layer by its untouched base layer and forget all adapter configs."""
    unet.unload_lora()
    if has_lora(unet):
        raise RuntimeError("LoRA layers survived unloading")


def attach_lora(pipe: StableDiffusionPipeline, lora_safetensors: bytes, adapter_name: str) -> LoraMetadata:
    """Load serialized LoRA bytes into pipe's UNet as the only active adapter, scaled by its alpha/rank."""
    state_dict, metadata = parse_lora(lora_safetensors)
    family = detect_family(pipe)
    if metadata.base_family != family:
        raise ValueError(f"LoRA was trained on {metadata.base_family!r}, this pipeline is {family!r}")
    unet = pipe.unet
    # diffusers loads LoRAs with assign=True (low_cpu_mem_usage): the tensors become the parameters, so
    # they must already have the UNet's device and dtype.
    state_dict = {key: value.to(device=unet.device, dtype=unet.dtype) for key, value in state_dict.items()}
    pipe.load_lora_weights(state_dict, adapter_name=adapter_name)
    # From an in-memory dict diffusers cannot see our header, so it infers lora_alpha (it assumes alpha =
    # rank). Re-weight the adapter so the effective scale is the trained alpha/rank, whatever was inferred.
    loaded = unet.peft_config[adapter_name]
    inferred_scale = float(loaded.lora_alpha) / float(loaded.r)
    unet.set_adapters([adapter_name], weights=[metadata.scale / inferred_scale])
    return metadata


def detach_lora(pipe: StableDiffusionPipeline) -> None:
    """Unload every LoRA from every component of pipe (UNet and text encoder)."""
    pipe.unload_lora_weights()
    if has_lora(pipe.unet) or has_lora(pipe.text_encoder):
        raise RuntimeError("LoRA layers survived unloading")
