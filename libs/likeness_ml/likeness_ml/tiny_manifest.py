"""What marks a folder as the tiny random-weight model: its `likeness-manifest.json` says `"tiny": true`.

The tiny model is pinned like any weights (the same manifest, so workers verify it the same way) and the
mark is what production refuses. Kept apart from `tiny_model` (which builds the pipeline with torch,
diffusers and transformers) so that tools which only need to tell the tiny model from real weights, such
as the demo, load none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from likeness_ml.model_manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    Manifest,
    ManifestMismatch,
    read_manifest,
    write_manifest,
)

# The tiny model's marker is the common manifest (the names stay for the tools that import them).
TINY_MANIFEST_NAME = MANIFEST_NAME
TINY_MANIFEST_FORMAT = MANIFEST_FORMAT
#: Where the tiny weights come from, as its manifest records it.
TINY_SOURCE = "likeness_ml.tiny_model (random weights, built offline)"
TINY_LICENCE = "Apache-2.0"


def write_tiny_manifest(out_dir: Path, seed: int, **facts: object) -> Path:
    """Pins a freshly written tiny model and marks it tiny (facts such as its seed are kept in it; the
    family is read from its configs)."""
    # The configs say which family the model is shaped like; the rest are facts to keep.
    kept: dict[str, Any] = {key: value for key, value in facts.items() if key != "family"}
    return write_manifest(out_dir, tiny=True, source=TINY_SOURCE, licence=TINY_LICENCE, seed=seed, **kept)


def read_tiny_manifest(path: Path) -> Manifest | None:
    """The manifest of a tiny pipeline directory, or None when path is not one."""
    try:
        manifest = read_manifest(path)
    except ManifestMismatch:
        return None
    return manifest if manifest.tiny else None


def is_tiny_model(path: Path) -> bool:
    return read_tiny_manifest(path) is not None
