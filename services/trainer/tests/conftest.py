"""Shared fixtures of the trainer's tests: the tiny model, synthetic "selfies", and a disk-write watch.

The watch is an audit hook (`sys.addaudithook`): it sees every `open()` for writing, temp file, rename and
copy in this process, from any thread, while `no_disk_writes()` is active. Hooks cannot be removed, so it
is installed once and only records while watching.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from likeness_ml.base_model import load_pipeline
from likeness_ml.tiny_model import write_tiny_pipeline
from likeness_ml.tiny_sdxl_model import write_tiny_sdxl_pipeline


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_pipeline(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def pipe(tiny_model_dir: Path) -> StableDiffusionPipeline:
    return load_pipeline(tiny_model_dir, torch.device("cpu"))


@pytest.fixture(scope="module")
def sdxl_pipe(tmp_path_factory: pytest.TempPathFactory) -> StableDiffusionXLPipeline:
    """The tiny SDXL-shaped pipeline (two text encoders, text_time UNet), loaded like real weights."""
    model_dir = write_tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny-sdxl-model"))
    return load_pipeline(model_dir, torch.device("cpu"))


def _synthetic_photos(count: int = 3) -> list[PIL.Image.Image]:
    """Synthetic "selfies": a skin-toned oval on a per-photo background, non-square like real uploads."""
    rng = np.random.default_rng(0)
    images = []
    for index in range(count):
        height, width = 80, 64
        yy, xx = np.mgrid[:height, :width]
        pixels = np.empty((height, width, 3), dtype=np.float32)
        pixels[:] = (40 + 60 * index, 160 - 30 * index, 200)
        face = ((yy - 38) / 22) ** 2 + ((xx - 32 - 3 * index) / 16) ** 2 < 1
        pixels[face] = (224, 172, 140)
        pixels += rng.normal(0, 6, pixels.shape)
        images.append(PIL.Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return images


@pytest.fixture(scope="module")
def photos() -> list[PIL.Image.Image]:
    return _synthetic_photos()


# --- privacy: nothing is written to disk -------------------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_WRITE_EVENTS = {
    "tempfile.mkstemp",
    "tempfile.mkdtemp",
    "os.rename",
    "os.replace",
    "shutil.copyfile",
    "os.truncate",
}
_writes: list[tuple[str, Any]] = []
_watching = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _watching:
        return
    if event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        ):
            _writes.append((event, path))
    elif event in _WRITE_EVENTS:
        _writes.append((event, args))


sys.addaudithook(_audit)


@contextmanager
def _no_disk_writes() -> Iterator[list[tuple[str, Any]]]:
    """Fails the block if anything in this process opened a file for writing (or renamed, copied, ...)."""
    global _watching
    _writes.clear()
    _watching = True
    try:
        yield _writes
    finally:
        _watching = False
    assert _writes == [], f"written to disk: {_writes}"


@pytest.fixture
def no_disk_writes() -> Callable[[], AbstractContextManager[list[tuple[str, Any]]]]:
    """`with no_disk_writes(): ...` fails if the block wrote anything to disk."""
    return _no_disk_writes
