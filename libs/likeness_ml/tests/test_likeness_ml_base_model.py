"""load_pipeline: fp32 on CPU, SDPA attention, eval mode, frozen, quiet; and facts about the base model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from likeness_ml.base_model import (
    detect_family,
    dtype_for,
    load_pipeline,
    native_resolution,
    select_device,
    use_sdpa_attention,
)


def test_select_device_prefers_cuda() -> None:
    assert select_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_dtype_is_bf16_on_gpu_and_fp32_on_cpu() -> None:
    assert dtype_for(torch.device("cuda")) is torch.bfloat16
    assert dtype_for(torch.device("cpu")) is torch.float32


def test_load_pipeline_prepares_models_for_inference(tiny_model_dir: Path) -> None:
    pipe = load_pipeline(tiny_model_dir, torch.device("cpu"))
    for model in (pipe.unet, pipe.vae, pipe.text_encoder):
        assert not model.training
        assert all(not parameter.requires_grad for parameter in model.parameters())
        assert all(parameter.dtype is torch.float32 for parameter in model.parameters())
    assert pipe._progress_bar_config == {"disable": True}


def test_load_pipeline_uses_sdpa_attention_everywhere(tiny_model_dir: Path) -> None:
    pipe = load_pipeline(tiny_model_dir, torch.device("cpu"))
    processors = [*pipe.unet.attn_processors.values(), *pipe.vae.attn_processors.values()]
    assert processors
    assert all(isinstance(processor, AttnProcessor2_0) for processor in processors)


def test_use_sdpa_attention_replaces_other_processors(tiny_pipe: StableDiffusionPipeline) -> None:
    tiny_pipe.unet.set_attn_processor(AttnProcessor())
    use_sdpa_attention(tiny_pipe)
    assert all(isinstance(p, AttnProcessor2_0) for p in tiny_pipe.unet.attn_processors.values())


def test_native_resolution_and_family_of_the_tiny_model(tiny_pipe: StableDiffusionPipeline) -> None:
    assert native_resolution(tiny_pipe) == 64
    assert detect_family(tiny_pipe) == "tiny"


def test_load_pipeline_refuses_missing_directories(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_pipeline(tmp_path / "nowhere", torch.device("cpu"))
