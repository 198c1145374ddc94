"""Putting a subject LoRA onto the resident pipeline and taking it off again without a trace.

Workers keep one base pipeline in memory for many people, so "off again" is a privacy property: after
``detach_lora``/``remove_lora`` the UNet holds no PEFT layers, no adapter config and produces bit-identical
outputs to a pipeline that never saw a LoRA (tests check exactly that).
"""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from peft.tuners.tuners_utils import BaseTunerLayer

from likeness_ml.base_model import BasePipeline, detect_family, text_encoders
from likeness_ml.lora_format import LoraMetadata, diffusers_adapter_metadata, parse_lora, split_by_component
from likeness_ml.text_encoder_lora import load_text_encoder_lora, remove_text_encoder_lora


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


def attach_lora(pipe: BasePipeline, lora_safetensors: bytes, adapter_name: str) -> LoraMetadata:
    """Load serialized LoRA bytes into pipe's UNet (and the text encoders it adapts, if any) as the active
    adapter, with the trained rank and alpha."""
    state_dict, metadata = parse_lora(lora_safetensors)
    family = detect_family(pipe)
    if metadata.base_family != family:
        raise ValueError(f"LoRA was trained on {metadata.base_family!r}, this pipeline is {family!r}")
    unet = pipe.unet
    # diffusers loads LoRAs with assign=True (low_cpu_mem_usage): the tensors become the parameters, so
    # they must already have the UNet's device and dtype.
    state_dict = {key: value.to(device=unet.device, dtype=unet.dtype) for key, value in state_dict.items()}
    # These are load_lora_weights' halves. Calling them directly lets us pass the adapter metadata: from an
    # in-memory dict load_lora_weights cannot see our header and would assume alpha == rank.
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
    parts = split_by_component(state_dict)
    for component in metadata.text_encoders:
        load_text_encoder_lora(
            getattr(pipe, component), parts[component], metadata.rank, metadata.alpha, adapter_name
        )
    return metadata


def detach_lora(pipe: BasePipeline) -> None:
    """Unload every LoRA from every component of pipe (UNet and text encoders: SDXL has two)."""
    pipe.unload_lora_weights()
    for encoder in text_encoders(pipe):
        if has_lora(encoder):  # adapters PEFT injected directly (likeness_ml.text_encoder_lora)
            remove_text_encoder_lora(encoder)
    if pipe_has_lora(pipe):
        raise RuntimeError("LoRA layers survived unloading")


def pipe_has_lora(pipe: BasePipeline) -> bool:
    """Whether any adapter layer sits in the UNet or any text encoder of pipe."""
    return any(has_lora(model) for model in (pipe.unet, *text_encoders(pipe)))
