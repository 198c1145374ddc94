"""The LoRA wire format round-trips, and attach/detach leave the resident pipeline exactly as it was."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from likeness_ml.lora_adapters import attach_lora, detach_lora, has_lora, remove_lora
from likeness_ml.lora_format import (
    LORA_TARGET_MODULES,
    LoraMetadata,
    parse_lora,
    read_lora_metadata,
    serialize_lora,
)

RANK = 4
ALPHA = 8.0  # deliberately != RANK: loading must honour alpha / rank = 2


def _unet_output(pipe: StableDiffusionPipeline) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    sample = torch.randn((1, 4, 16, 16), generator=generator)
    context = torch.randn((1, 77, 32), generator=generator)
    with torch.no_grad():
        output: torch.Tensor = pipe.unet(sample, torch.tensor([500]), encoder_hidden_states=context).sample
    return output


def _lora_with_reference_output(
    pipe: StableDiffusionPipeline, family: str = "tiny"
) -> tuple[bytes, torch.Tensor]:
    """A random (non-zero) LoRA as bytes, plus the UNet output while PEFT itself had it attached."""
    config = LoraConfig(
        r=RANK, lora_alpha=ALPHA, init_lora_weights=False, target_modules=list(LORA_TARGET_MODULES)
    )
    torch.manual_seed(3)
    pipe.unet.add_adapter(config, adapter_name="reference")
    try:
        reference = _unet_output(pipe)
        state_dict = convert_state_dict_to_diffusers(
            get_peft_model_state_dict(pipe.unet, adapter_name="reference")
        )
        data = serialize_lora(state_dict, LoraMetadata(RANK, ALPHA, family, "ohwx person"))
    finally:
        remove_lora(pipe.unet)
    return data, reference


def test_round_trip_keeps_tensors_and_metadata(tiny_pipe: StableDiffusionPipeline) -> None:
    data, _ = _lora_with_reference_output(tiny_pipe)
    state_dict, metadata = parse_lora(data)
    assert metadata == LoraMetadata(RANK, ALPHA, "tiny", "ohwx person", LORA_TARGET_MODULES)
    assert metadata.target_modules == ("to_k", "to_out.0", "to_q", "to_v")
    assert metadata.scale == ALPHA / RANK
    assert read_lora_metadata(data) == metadata
    assert state_dict
    assert all(key.startswith("unet.") and ".lora." in key for key in state_dict)
    assert all(
        tensor.dtype is torch.float32 and tensor.device.type == "cpu" for tensor in state_dict.values()
    )


def test_serialization_is_byte_deterministic(tiny_pipe: StableDiffusionPipeline) -> None:
    # safetensors writes its metadata map in random order; serialize_lora must not.
    state_dict, metadata = parse_lora(_lora_with_reference_output(tiny_pipe)[0])
    unprefixed = {key.removeprefix("unet."): value for key, value in state_dict.items()}
    assert len({serialize_lora(unprefixed, metadata) for _ in range(10)}) == 1


def test_header_carries_diffusers_adapter_metadata(tiny_pipe: StableDiffusionPipeline) -> None:
    data, _ = _lora_with_reference_output(tiny_pipe)
    (length,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + length])["__metadata__"]
    adapter = json.loads(header["lora_adapter_metadata"])
    assert adapter["unet.r"] == RANK
    assert adapter["unet.lora_alpha"] == ALPHA


@pytest.mark.parametrize("data", [b"", b"\x00" * 8, b"garbage that is not safetensors", b"\xff" * 16])
def test_parse_rejects_non_lora_bytes(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"safetensors|LoRA"):
        parse_lora(data)


def test_parse_rejects_safetensors_without_our_metadata() -> None:
    import safetensors.torch

    data = safetensors.torch.save({"unet.x.lora.down.weight": torch.zeros(2, 2)}, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="Likeness LoRA"):
        parse_lora(data)


def test_attach_honours_rank_and_alpha(tiny_pipe: StableDiffusionPipeline) -> None:
    data, reference = _lora_with_reference_output(tiny_pipe)
    base = _unet_output(tiny_pipe)
    try:
        attach_lora(tiny_pipe, data, "subject")
        loaded = _unet_output(tiny_pipe)
    finally:
        detach_lora(tiny_pipe)
    assert not torch.equal(loaded, base)
    torch.testing.assert_close(loaded, reference, rtol=0, atol=1e-6)


def test_detach_restores_bit_identical_outputs(tiny_pipe: StableDiffusionPipeline) -> None:
    data, _ = _lora_with_reference_output(tiny_pipe)
    before = _unet_output(tiny_pipe)
    attach_lora(tiny_pipe, data, "subject")
    assert has_lora(tiny_pipe.unet)
    detach_lora(tiny_pipe)
    assert not has_lora(tiny_pipe.unet)
    assert not has_lora(tiny_pipe.text_encoder)
    assert torch.equal(_unet_output(tiny_pipe), before)


def test_attach_refuses_a_lora_of_another_base_family(tiny_pipe: StableDiffusionPipeline) -> None:
    data, _ = _lora_with_reference_output(tiny_pipe, family="sd15")
    with pytest.raises(ValueError, match="sd15"):
        attach_lora(tiny_pipe, data, "subject")
    assert not has_lora(tiny_pipe.unet)
