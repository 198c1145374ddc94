"""Pinning operator-provisioned weights: a `likeness-manifest.json` of SHA-256 digests beside the files.

Weights that are not personal data (the output safety classifier, like the base model) are mounted
read-only or fetched at start. What is loaded must be exactly what the operator reviewed: the manifest
lists every file's digest, and `verify_manifest` refuses a directory with a missing, extra or changed
file before `from_pretrained` reads a byte of it. Write one with `python -m likeness_ml.model_manifest DIR`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from likeness_ml.digests import directory_digests

MANIFEST_NAME = "likeness-manifest.json"
MANIFEST_FORMAT = "likeness-manifest/1"


class ManifestMismatch(RuntimeError):
    """The directory is not the one its manifest pins (or has no manifest)."""


def write_manifest(model_dir: Path, **facts: object) -> Path:
    """Pins model_dir as it is now; facts (e.g. tiny=True) are kept beside the digests."""
    manifest = {"format": MANIFEST_FORMAT, **facts, "files": directory_digests(model_dir, {MANIFEST_NAME})}
    path = model_dir / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_manifest(model_dir: Path) -> dict[str, object]:
    try:
        manifest = json.loads((model_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as unreadable:
        raise ManifestMismatch(f"{model_dir} has no readable {MANIFEST_NAME}") from unreadable
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestMismatch(f"{model_dir / MANIFEST_NAME} is not a {MANIFEST_FORMAT} manifest")
    return manifest


def verify_manifest(model_dir: Path) -> dict[str, object]:
    """The manifest of model_dir, after checking every file against it (raises ManifestMismatch)."""
    if not model_dir.is_dir():
        raise ManifestMismatch(f"model directory not found: {model_dir}")
    manifest = read_manifest(model_dir)
    pinned = manifest.get("files")
    actual = directory_digests(model_dir, {MANIFEST_NAME})
    if not isinstance(pinned, dict) or not pinned:
        raise ManifestMismatch(f"{model_dir / MANIFEST_NAME} pins no file")
    if actual != pinned:
        changed = sorted(name for name in set(pinned) | set(actual) if pinned.get(name) != actual.get(name))
        raise ManifestMismatch(f"{model_dir} differs from its manifest: {', '.join(changed[:5])}")
    return manifest


if __name__ == "__main__":  # pragma: no cover - operator tool
    for argument in sys.argv[1:]:
        print(write_manifest(Path(argument)))
