"""The tiny base model for development: written by likeness_ml (imported lazily: it pulls in torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

#: The production family a tiny model is shaped like (`likeness model tiny --family`).
TinyFamily = Literal["sd15", "sdxl"]
TINY_FAMILIES: tuple[TinyFamily, ...] = get_args(TinyFamily)


class ModelError(RuntimeError):
    """The tiny model could not be written."""


def write_tiny_model(out_dir: Path, seed: int | None = None, family: TinyFamily = "sd15") -> Path:
    """Write the tiny diffusion pipeline shaped like family (SD 1.5 or SDXL) to `out_dir`, with
    likeness_ml's write_tiny_pipeline / write_tiny_sdxl_pipeline."""
    if family not in TINY_FAMILIES:
        raise ModelError(f"no tiny model of family {family!r} (one of {', '.join(TINY_FAMILIES)})")
    try:  # imported here: they pull in torch
        from likeness_ml.tiny_model import write_tiny_pipeline
        from likeness_ml.tiny_sdxl_model import write_tiny_sdxl_pipeline
    except ImportError as error:
        raise ModelError(
            f"cannot import likeness_ml.tiny_model ({error}); is libs/likeness_ml installed?"
        ) from error
    writer = write_tiny_sdxl_pipeline if family == "sdxl" else write_tiny_pipeline
    out_dir.mkdir(parents=True, exist_ok=True)
    if seed is None:
        writer(out_dir)
    else:
        writer(out_dir, seed=seed)
    return out_dir
