"""LoRA layers on a CLIP text encoder, with PEFT directly: added, read out, loaded and removed.

transformers' own adapter integration (``PreTrainedModel.add_adapter``, which diffusers' text-encoder LoRA
loading goes through) refuses the PEFT release our lock pins, so text encoders get their adapters from
PEFT's ``inject_adapter_in_model``, and the weights move in diffusers' key format
(``<module>.lora_linear_layer.down.weight`` / ``.up.weight``) so the bytes read like any diffusers LoRA.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from diffusers.utils.peft_utils import recurse_remove_peft_layers
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer

from likeness_ml.lora_format import TEXT_ENCODER_TARGET_MODULES

_DOWN = ".lora_linear_layer.down.weight"
_UP = ".lora_linear_layer.up.weight"


def add_text_encoder_adapter(
    text_encoder: torch.nn.Module, rank: int, alpha: float, adapter_name: str, init: str | bool = "gaussian"
) -> None:
    """LoRA layers on the encoder's attention projections (A ~ N(0, 1/r), B = 0 with "gaussian")."""
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        init_lora_weights=init,
        target_modules=list(TEXT_ENCODER_TARGET_MODULES),
    )
    inject_adapter_in_model(config, text_encoder, adapter_name=adapter_name)


def text_encoder_lora_state_dict(text_encoder: torch.nn.Module, adapter_name: str) -> dict[str, torch.Tensor]:
    """The adapter's (down, up) weights in diffusers' text-encoder key format."""
    state_dict: dict[str, torch.Tensor] = {}
    for name, module in _lora_layers(text_encoder):
        state_dict[name + _DOWN] = module.lora_A[adapter_name].weight
        state_dict[name + _UP] = module.lora_B[adapter_name].weight
    if not state_dict:
        raise ValueError("the text encoder carries no LoRA layers")
    return state_dict


def load_text_encoder_lora(
    text_encoder: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    rank: int,
    alpha: float,
    adapter_name: str,
) -> None:
    """Adds an adapter holding exactly state_dict's weights (keys without the component prefix)."""
    add_text_encoder_adapter(text_encoder, rank, alpha, adapter_name, init=False)
    expected = set(text_encoder_lora_state_dict(text_encoder, adapter_name))
    if set(state_dict) != expected:
        remove_text_encoder_lora(text_encoder)
        raise ValueError("the LoRA's text-encoder layers do not match this text encoder")
    with torch.no_grad():
        for name, module in _lora_layers(text_encoder):
            for suffix, target in ((_DOWN, module.lora_A), (_UP, module.lora_B)):
                weight = target[adapter_name].weight
                weight.copy_(state_dict[name + suffix].to(device=weight.device, dtype=weight.dtype))


def remove_text_encoder_lora(text_encoder: torch.nn.Module) -> None:
    """Replace every PEFT layer by its untouched base layer (what diffusers' unload does to an encoder)."""
    recurse_remove_peft_layers(text_encoder)
    if getattr(text_encoder, "peft_config", None) is not None:
        del text_encoder.peft_config
    if any(isinstance(module, LoraLayer) for module in text_encoder.modules()):
        raise RuntimeError("LoRA layers survived unloading")


def _lora_layers(text_encoder: torch.nn.Module) -> list[tuple[str, LoraLayer]]:
    return [(name, module) for name, module in text_encoder.named_modules() if isinstance(module, LoraLayer)]
