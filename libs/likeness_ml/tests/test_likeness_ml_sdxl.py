"""SDXL in likeness_ml: the tiny SDXL model loads as StableDiffusionXLPipeline through the same entry point
as SD, its conditioning has SDXL's shapes, and a LoRA round trip on it leaves the pipeline untouched."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from likeness_ml.base_model import (
    detect_family,
    dtype_for,
    is_sdxl,
    load_pipeline,
    native_resolution,
    pipeline_class_for,
    shaped_like,
    text_encoders,
)
from likeness_ml.conditioning import center_crop_top_left, encode_conditioning, sdxl_time_ids
from likeness_ml.digests import directory_digests
from likeness_ml.lora_adapters import attach_lora, detach_lora, pipe_has_lora, remove_lora
from likeness_ml.lora_format import (
    LORA_TARGET_MODULES,
    LoraMetadata,
    parse_lora,
    serialize_lora,
    split_by_component,
)
from likeness_ml.text_encoder_lora import (
    add_text_encoder_adapter,
    remove_text_encoder_lora,
    text_encoder_lora_state_dict,
)
from likeness_ml.tiny_manifest import is_tiny_model
from likeness_ml.tiny_sdxl_model import write_tiny_sdxl_pipeline

TEXT_WIDTH = 64  # both tiny encoders' 32, concatenated
POOLED_WIDTH = 32


def test_load_pipeline_builds_the_class_the_directory_declares(
    tiny_model_dir: Path, tiny_sdxl_model_dir: Path
) -> None:
    assert pipeline_class_for(tiny_model_dir) is StableDiffusionPipeline
    assert pipeline_class_for(tiny_sdxl_model_dir) is StableDiffusionXLPipeline
    pipe = load_pipeline(tiny_sdxl_model_dir, torch.device("cpu"))
    assert isinstance(pipe, StableDiffusionXLPipeline)
    assert is_sdxl(pipe)
    assert pipe.watermark is None  # outputs are marked by the renderer, never by a pixel watermark


def test_sdxl_models_are_frozen_quiet_and_use_sdpa(tiny_sdxl_pipe: StableDiffusionXLPipeline) -> None:
    encoders = text_encoders(tiny_sdxl_pipe)
    assert [type(encoder).__name__ for encoder in encoders] == [
        "CLIPTextModel",
        "CLIPTextModelWithProjection",
    ]
    for model in (tiny_sdxl_pipe.unet, tiny_sdxl_pipe.vae, *encoders):
        assert not model.training
        assert all(not parameter.requires_grad for parameter in model.parameters())
    processors = [*tiny_sdxl_pipe.unet.attn_processors.values(), *tiny_sdxl_pipe.vae.attn_processors.values()]
    assert processors
    assert all(isinstance(p, AttnProcessor2_0) for p in processors)
    assert tiny_sdxl_pipe._progress_bar_config == {"disable": True}


def test_family_of_each_tiny_model_and_what_it_stands_in_for(
    tiny_pipe: StableDiffusionPipeline, tiny_sdxl_pipe: StableDiffusionXLPipeline
) -> None:
    assert (detect_family(tiny_sdxl_pipe), native_resolution(tiny_sdxl_pipe)) == ("tiny_sdxl", 64)
    assert tiny_sdxl_pipe.unet.config.addition_embed_type == "text_time"
    assert shaped_like("tiny_sdxl") == "sdxl"
    assert shaped_like(detect_family(tiny_pipe)) == "sd15"
    assert shaped_like("sdxl") == "sdxl"


def test_pipeline_class_for_refuses_what_it_cannot_load(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        pipeline_class_for(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"model_index\.json"):
        pipeline_class_for(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(ValueError, match="'FluxPipeline'"):
        pipeline_class_for(tmp_path)


def test_tiny_sdxl_model_is_reproducible_and_pinned(tiny_sdxl_model_dir: Path, tmp_path: Path) -> None:
    again = write_tiny_sdxl_pipeline(tmp_path / "again", seed=0)
    assert directory_digests(again) == directory_digests(tiny_sdxl_model_dir)
    assert {"tokenizer_2/vocab.json", "text_encoder_2/model.safetensors"} <= set(directory_digests(again))
    assert is_tiny_model(tiny_sdxl_model_dir)


def test_sdxl_conditioning_concatenates_both_encoders_and_pools_the_second(
    tiny_sdxl_pipe: StableDiffusionXLPipeline,
) -> None:
    conditioning = encode_conditioning(tiny_sdxl_pipe, "a photo of ohwx person")
    assert conditioning.embeds.shape == (1, 77, TEXT_WIDTH)
    assert conditioning.pooled is not None
    assert conditioning.pooled.shape == (1, POOLED_WIDTH)
    tokens = tiny_sdxl_pipe.tokenizer_2(
        "a photo of ohwx person", padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        second = tiny_sdxl_pipe.text_encoder_2(tokens, output_hidden_states=True)
    # The second half is the second encoder's penultimate layer; the pooled one its projection.
    torch.testing.assert_close(conditioning.embeds[..., 32:], second.hidden_states[-2])
    torch.testing.assert_close(conditioning.pooled, second.text_embeds)
    assert tiny_sdxl_pipe.unet.config.cross_attention_dim == TEXT_WIDTH


def test_sd_conditioning_has_no_pooled_embedding(tiny_pipe: StableDiffusionPipeline) -> None:
    conditioning = encode_conditioning(tiny_pipe, "a photo of ohwx person")
    assert conditioning.embeds.shape == (1, 77, 32)
    assert conditioning.pooled is None


def test_time_ids_say_original_size_crop_and_target() -> None:
    assert sdxl_time_ids((80, 64), (8, 0), (64, 64)).tolist() == [80, 64, 8, 0, 64, 64]
    # A 80x64 (h x w) photo, short side to 64: 80 rows, a centered 64-row crop starts at row 8.
    assert center_crop_top_left((80, 64), 64) == (8, 0)
    assert center_crop_top_left((1024, 1536), 1024) == (0, 256)
    assert center_crop_top_left((512, 512), 1024) == (0, 0)


def _sdxl_unet_output(pipe: StableDiffusionXLPipeline) -> torch.Tensor:
    generator = torch.Generator().manual_seed(7)
    sample = torch.randn((1, 4, 16, 16), generator=generator)
    context = torch.randn((1, 77, TEXT_WIDTH), generator=generator)
    added = {
        "text_embeds": torch.randn((1, POOLED_WIDTH), generator=generator),
        "time_ids": sdxl_time_ids((64, 64), (0, 0), (64, 64)).unsqueeze(0),
    }
    with torch.no_grad():
        output: torch.Tensor = pipe.unet(
            sample, torch.tensor([500]), encoder_hidden_states=context, added_cond_kwargs=added
        ).sample
    return output


def _random_sdxl_lora(pipe: StableDiffusionXLPipeline, family: str) -> tuple[bytes, torch.Tensor]:
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, target_modules=list(LORA_TARGET_MODULES))
    torch.manual_seed(3)
    pipe.unet.add_adapter(config, adapter_name="reference")
    try:
        reference = _sdxl_unet_output(pipe)
        state_dict = convert_state_dict_to_diffusers(
            get_peft_model_state_dict(pipe.unet, adapter_name="reference")
        )
        data = serialize_lora(state_dict, LoraMetadata(4, 8.0, family, "ohwx person"))
    finally:
        remove_lora(pipe.unet)
    return data, reference


def test_sdxl_lora_round_trip_reproduces_the_adapter_and_detaches_cleanly(
    tiny_sdxl_pipe: StableDiffusionXLPipeline,
) -> None:
    before = _sdxl_unet_output(tiny_sdxl_pipe)
    data, reference = _random_sdxl_lora(tiny_sdxl_pipe, "tiny_sdxl")
    assert not torch.equal(reference, before)
    attach_lora(tiny_sdxl_pipe, data, "subject")
    try:
        torch.testing.assert_close(_sdxl_unet_output(tiny_sdxl_pipe), reference)
    finally:
        detach_lora(tiny_sdxl_pipe)
    assert not pipe_has_lora(tiny_sdxl_pipe)
    assert torch.equal(_sdxl_unet_output(tiny_sdxl_pipe), before)


def test_a_lora_of_another_family_is_refused_on_sdxl(tiny_sdxl_pipe: StableDiffusionXLPipeline) -> None:
    data, _ = _random_sdxl_lora(tiny_sdxl_pipe, "tiny")
    with pytest.raises(ValueError, match="trained on 'tiny', this pipeline is 'tiny_sdxl'"):
        attach_lora(tiny_sdxl_pipe, data, "subject")
    assert not pipe_has_lora(tiny_sdxl_pipe)


def _unet_part(data: bytes) -> dict[str, torch.Tensor]:
    state_dict, _ = parse_lora(data)
    return split_by_component(state_dict)["unet"]


def test_a_lora_with_text_encoders_round_trips_and_attaches_to_both(
    tiny_sdxl_pipe: StableDiffusionXLPipeline,
) -> None:
    data, _ = _random_sdxl_lora(tiny_sdxl_pipe, "tiny_sdxl")
    encoder = tiny_sdxl_pipe.text_encoder_2
    torch.manual_seed(9)
    add_text_encoder_adapter(encoder, 4, 8.0, "made", init=False)
    try:
        encoder_lora = {
            k: v.detach().clone() for k, v in text_encoder_lora_state_dict(encoder, "made").items()
        }
    finally:
        remove_text_encoder_lora(encoder)
    metadata = LoraMetadata(4, 8.0, "tiny_sdxl", "ohwx person", text_encoders=("text_encoder_2",))
    both = serialize_lora(_unet_part(data), metadata, {"text_encoder_2": encoder_lora})
    state_dict, parsed = parse_lora(both)
    assert parsed == metadata
    assert all(torch.equal(state_dict[f"text_encoder_2.{k}"], v) for k, v in encoder_lora.items())
    assert b"likeness.text_encoders" not in data, "a UNet-only LoRA's bytes do not mention encoders"
    attach_lora(tiny_sdxl_pipe, both, "subject")
    try:
        assert pipe_has_lora(tiny_sdxl_pipe)
        adapted = text_encoder_lora_state_dict(encoder, "subject")
        assert all(torch.equal(adapted[k], v) for k, v in encoder_lora.items())
    finally:
        detach_lora(tiny_sdxl_pipe)
    assert not pipe_has_lora(tiny_sdxl_pipe)


def test_text_encoder_parts_must_match_what_the_metadata_names(
    tiny_sdxl_pipe: StableDiffusionXLPipeline,
) -> None:
    data, _ = _random_sdxl_lora(tiny_sdxl_pipe, "tiny_sdxl")
    unet = _unet_part(data)
    with pytest.raises(ValueError, match="unknown text encoder"):
        LoraMetadata(4, 8.0, "tiny_sdxl", "ohwx person", text_encoders=("vae",))
    names_one = LoraMetadata(4, 8.0, "tiny_sdxl", "ohwx person", text_encoders=("text_encoder",))
    with pytest.raises(ValueError, match="differ from those the metadata names"):
        serialize_lora(unet, names_one)
    # Bytes whose metadata names an encoder but carry none of its tensors are refused on reading.
    plain = serialize_lora(unet, LoraMetadata(4, 8.0, "tiny_sdxl", "ohwx person"))
    (length,) = struct.unpack_from("<Q", plain)
    header = json.loads(plain[8 : 8 + length])["__metadata__"]
    tensors, _ = parse_lora(plain)
    forged = safetensors.torch.save(
        tensors, metadata={**header, "likeness.text_encoders": '["text_encoder"]'}
    )
    with pytest.raises(ValueError, match="names text_encoder but carries none of its tensors"):
        parse_lora(forged)


def test_gpus_without_bf16_compute_in_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert dtype_for(torch.device("cuda")) is torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert dtype_for(torch.device("cuda")) is torch.bfloat16
