"""The dev stack's tiny base model, written once per project and shared by its trainer and renderer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from likeness_cli.models import write_tiny_model


def ensure_tiny_model(models_dir: Path) -> Path:
    """`models_dir/tiny`, written on first use.

    It is written to a scratch folder and renamed into place, so an existing `tiny` is always complete
    (an interrupted write leaves only a scratch folder, removed next time).
    """
    target = models_dir / "tiny"
    if target.is_dir():
        return target
    scratch = models_dir / f".tiny.partial-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        write_tiny_model(scratch)
        try:
            scratch.rename(target)
        except OSError:
            if not target.is_dir():  # else another process won the race with a complete model
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
