"""Shared fixtures: the tiny random-weight pipeline, written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from likeness_ml.base_model import load_pipeline
from likeness_ml.tiny_model import write_tiny_pipeline
from likeness_ml.tiny_sdxl_model import write_tiny_sdxl_pipeline


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_pipeline(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def tiny_pipe(tiny_model_dir: Path) -> StableDiffusionPipeline:
    return load_pipeline(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_sdxl_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny-sdxl-model"))


@pytest.fixture(scope="module")
def tiny_sdxl_pipe(tiny_sdxl_model_dir: Path) -> StableDiffusionXLPipeline:
    return load_pipeline(tiny_sdxl_model_dir)
