"""The dev stack's tiny base model, written once per project (per family) and shared by its trainer and
renderer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from likeness_cli.models import TinyFamily, write_tiny_model
from likeness_ml.tiny_manifest import is_tiny_model


def tiny_model_folder(family: TinyFamily) -> str:
    """The folder name of the tiny model shaped like family (`tiny` for SD 1.5, as before SDXL came)."""
    return "tiny" if family == "sd15" else f"tiny-{family}"


def ensure_tiny_model(models_dir: Path, family: TinyFamily = "sd15") -> Path:
    """`models_dir/tiny` (or `tiny-sdxl`), written on first use.

    It is written to a scratch folder and renamed into place, so an existing `tiny` is always complete
    (an interrupted write leaves only a scratch folder, removed next time).
    """
    folder = tiny_model_folder(family)
    target = models_dir / folder
    if target.is_dir():
        if is_tiny_model(target):
            return target
        # Written before tiny models were pinned (no `likeness-manifest.json`): workers would refuse it.
        shutil.rmtree(target)
    scratch = models_dir / f".{folder}.partial-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        write_tiny_model(scratch, family=family)
        try:
            scratch.rename(target)
        except OSError:
            if not target.is_dir():  # else another process won the race with a complete model
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def ensure_tiny_identity_adapter(base_model: Path) -> Path:
    """The tiny identity adapter (instant mode) shaped for the tiny base model at base_model, written once
    beside it (`<base>-identity-adapter`) the same way: to a scratch folder renamed into place."""
    target = base_model.parent / f"{base_model.name}-identity-adapter"
    if target.is_dir():
        if is_tiny_model(target):
            return target
        shutil.rmtree(target)
    scratch = base_model.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        from likeness_ml.tiny_identity_adapter import write_tiny_identity_adapter  # pulls in torch

        write_tiny_identity_adapter(scratch, base_model)
        try:
            scratch.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def tiny_identity_adapter_env(base_model: str) -> dict[str, str]:
    """`LIKENESS_IDENTITY_ADAPTER` for a service on the tiny base model (instant mode works out of the box
    in development); nothing for real weights, whose adapter the operator provisions and names."""
    path = Path(base_model)
    if not is_tiny_model(path):
        return {}
    return {"LIKENESS_IDENTITY_ADAPTER": str(ensure_tiny_identity_adapter(path))}
