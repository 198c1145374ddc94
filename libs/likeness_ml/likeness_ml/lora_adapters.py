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
from likeness_ml.lora_format import LoraMetadata, diffusers_adapter_metadata, parse_lora


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
    """Load serialized LoRA bytes into pipe's UNet as its active adapter, with the trained rank and alpha."""
    state_dict, metadata = parse_lora(lora_safetensors)
    family = detect_family(pipe)
    if metadata.base_family != family:
        raise ValueError(f"LoRA was trained on {metadata.base_family!r}, this pipeline is {family!r}")
    unet = pipe.unet
    # diffusers loads LoRAs with assign=True (low_cpu_mem_usage): the tensors become the parameters, so
    # they must already have the UNet's device and dtype.
    state_dict = {key: value.to(device=unet.device, dtype=unet.dtype) for key, value in state_dict.items()}
    # This is load_lora_weights' UNet half. Calling it directly lets us pass the adapter metadata: from an
    # in-memory dict load_lora_weights cannot see our header and would assume alpha == rank. (Our LoRAs
    # have no text-encoder half, so the other half would only log a warning.)
    pipe.load_lora_into_unet(
        state_dict,
        network_alphas=None,
        unet=unet,
        adapter_name=adapter_name,
        metadata=diffusers_adapter_metadata(metadata),
        _pipeline=pipe,
    )
    loaded = unet.peft_config[adapter_name]
    if loaded.r != metadata.rank or float(loaded.lora_alpha) != metadata.alpha:
        raise RuntimeError("LoRA loaded with a different rank/alpha than it was trained with")
    return metadata


def detach_lora(pipe: StableDiffusionPipeline) -> None:
    """Unload every LoRA from every component of pipe (UNet and text encoder)."""
    pipe.unload_lora_weights()
    if has_lora(pipe.unet) or has_lora(pipe.text_encoder):
        raise RuntimeError("LoRA layers survived unloading")
