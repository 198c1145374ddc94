"""Shared fixtures of the renderer's tests: the tiny pipeline, subject LoRAs as the trainer hands them over,
and (for the worker tests) renderer settings pointing at the session's real NATS, S3 and Vault API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from likeness_dev.infra import Infra
from likeness_ml.base_model import load_pipeline
from likeness_ml.lora_adapters import remove_lora
from likeness_ml.lora_format import LORA_TARGET_MODULES, LoraMetadata, serialize_lora
from likeness_ml.subject import SUBJECT_PHRASE
from likeness_ml.tiny_model import write_tiny_pipeline
from likeness_ml.tiny_sdxl_model import write_tiny_sdxl_pipeline
from renderer.config import RendererSettings

MakeLora = Callable[[int], bytes]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_pipeline(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def pipe(model_dir: Path) -> StableDiffusionPipeline:
    return load_pipeline(model_dir, torch.device("cpu"))


def random_lora(
    pipe: StableDiffusionPipeline, seed: int, rank: int = 4, alpha: float = 4.0, family: str = "tiny"
) -> bytes:
    """A subject LoRA as the trainer would hand it over (random non-zero weights, in the wire format)."""
    config = LoraConfig(
        r=rank, lora_alpha=alpha, init_lora_weights=False, target_modules=list(LORA_TARGET_MODULES)
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe.unet.add_adapter(config, adapter_name="made_in_test")
    try:
        state_dict = convert_state_dict_to_diffusers(
            get_peft_model_state_dict(pipe.unet, adapter_name="made_in_test")
        )
    finally:
        remove_lora(pipe.unet)
    # Random LoRA weights are huge compared with trained ones; damp them so images stay in range.
    state_dict = {key: value * 0.3 for key, value in state_dict.items()}
    return serialize_lora(state_dict, LoraMetadata(rank, alpha, family, SUBJECT_PHRASE))


@pytest.fixture(scope="session")
def make_lora(pipe: StableDiffusionPipeline) -> MakeLora:
    return lambda seed: random_lora(pipe, seed)


@pytest.fixture(scope="session")
def sdxl_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny-sdxl-model"))


@pytest.fixture(scope="session")
def sdxl_pipe(sdxl_model_dir: Path) -> StableDiffusionXLPipeline:
    return load_pipeline(sdxl_model_dir, torch.device("cpu"))


@pytest.fixture(scope="session")
def sdxl_lora(sdxl_pipe: StableDiffusionXLPipeline) -> bytes:
    """A subject LoRA trained (as far as its metadata says) on the tiny SDXL model."""
    return random_lora(sdxl_pipe, seed=1, family="tiny_sdxl")


@pytest.fixture(scope="session")
def lora(make_lora: MakeLora) -> bytes:
    return make_lora(1)


@pytest.fixture(scope="session")
def make_settings(infra: Infra, model_dir: Path) -> Callable[..., RendererSettings]:
    """Renderer settings for the session's servers and the tiny model, with overrides."""

    def make(**overrides: object) -> RendererSettings:
        env = infra.endpoints.as_env()
        values: dict[str, object] = {k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()}
        values |= {"base_model": model_dir, "inference_steps": 3, "ack_wait_seconds": 10.0}
        return RendererSettings.model_validate(values | overrides)

    return make
