"""What marks a folder as the tiny random-weight model: its `likeness-tiny.json` manifest.

Kept apart from `tiny_model` (which builds the pipeline with torch, diffusers and transformers) so that
tools which only need to tell the tiny model from real weights, such as the demo, load none of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_MANIFEST_NAME = "likeness-tiny.json"
TINY_MANIFEST_FORMAT = "likeness-tiny/1"


def read_tiny_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a tiny pipeline directory, or None when path is not one."""
    try:
        manifest = json.loads((path / TINY_MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != TINY_MANIFEST_FORMAT:
        return None
    return manifest


def is_tiny_model(path: Path) -> bool:
    return read_tiny_manifest(path) is not None
