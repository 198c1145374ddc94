"""SHA-256 digests of a model directory, for manifests that pin exactly which weights are served."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def directory_digests(root: Path, exclude: Collection[str] = ()) -> dict[str, str]:
    """POSIX relative path -> sha256 of every regular file under root (sorted, so the dict is stable)."""
    digests: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative not in exclude:
            digests[relative] = file_sha256(path)
    return digests
