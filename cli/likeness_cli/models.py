"""The tiny base model for development: written by likeness_ml (imported lazily: it pulls in torch)."""

from __future__ import annotations

from pathlib import Path


class ModelError(RuntimeError):
    """The tiny model could not be written."""


def write_tiny_model(out_dir: Path, seed: int | None = None) -> Path:
    """Write the tiny diffusion pipeline to `out_dir` with likeness_ml.tiny_model.write_tiny_pipeline."""
    try:
        from likeness_ml.tiny_model import write_tiny_pipeline  # imported here: it pulls in torch
    except ImportError as error:
        raise ModelError(
            f"cannot import likeness_ml.tiny_model ({error}); is libs/likeness_ml installed?"
        ) from error
    out_dir.mkdir(parents=True, exist_ok=True)
    if seed is None:
        write_tiny_pipeline(out_dir)
    else:
        write_tiny_pipeline(out_dir, seed=seed)
    return out_dir
