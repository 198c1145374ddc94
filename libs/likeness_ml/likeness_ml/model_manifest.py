"""Pinning operator-provisioned weights: a `likeness-manifest.json` beside the files, one format for every
pinned weight (the base model, the output safety classifier, later the identity adapter).

Weights are not personal data: they are mounted read-only or fetched at start. What is loaded must be
exactly what the operator reviewed: the manifest lists every file with its SHA-256 and size, the family of
a base model, where the weights came from and under which licence, and whether they are the tiny random
test model (which production refuses). `verify_manifest` refuses a directory with a missing, extra, resized
or changed file, or none at all, naming the file, before `from_pretrained` reads a byte of it: sizes are
compared first (a truncated or swapped file is refused at once), then every file is hashed as a stream.
Write one with `likeness model manifest DIR` (or `python -m likeness_ml.model_manifest DIR`).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from likeness_ml.digests import FileEntry, directory_files, file_sha256, hash_files
from likeness_ml.pipeline_layout import FAMILIES, PIPELINE_CLASS, WeightsFamily, detect_family

MANIFEST_NAME = "likeness-manifest.json"
MANIFEST_FORMAT = "likeness-manifest/2"
#: Keys of the manifest with a meaning of their own; any other key is kept as a fact (seed, import origin).
_KNOWN_KEYS = frozenset({"format", "files", "family", "tiny", "source", "licence"})
#: Files named in a refusal at most (a wholly different directory would otherwise print every file).
_NAMED = 5


class ManifestMismatch(RuntimeError):
    """The directory is not the one its manifest pins (or has no manifest)."""


@dataclass(frozen=True)
class Manifest:
    files: dict[str, FileEntry]
    family: WeightsFamily | None = None
    tiny: bool = False
    source: str = ""
    licence: str = ""
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files.values())

    def digests(self) -> dict[str, str]:
        return {name: entry.sha256 for name, entry in self.files.items()}

    def as_json(self) -> dict[str, object]:
        document: dict[str, object] = {
            "format": MANIFEST_FORMAT,
            **self.facts,
            "tiny": self.tiny,
            "source": self.source,
            "licence": self.licence,
            "files": {name: {"sha256": e.sha256, "size": e.size} for name, e in self.files.items()},
        }
        if self.family is not None:
            document["family"] = self.family
        return document


def write_manifest(
    model_dir: Path,
    *,
    family: WeightsFamily | None = None,
    source: str = "",
    licence: str = "",
    tiny: bool = False,
    **facts: object,
) -> Path:
    """Pins model_dir as it is now. family: a base model's (default: read from its configs; a mismatch
    with them is refused); facts (e.g. seed=0) are kept beside the digests."""
    if not model_dir.is_dir():
        raise ManifestMismatch(f"model directory not found: {model_dir}")
    if family is not None and family not in FAMILIES:
        raise ManifestMismatch(f"unknown family {family!r} (one of {', '.join(FAMILIES)})")
    detected = detect_family(model_dir)
    if family is not None and detected is not None and family != detected:
        raise ManifestMismatch(f"{model_dir} holds a {detected} pipeline, not {family}")
    manifest = Manifest(
        files=hash_files(directory_files(model_dir, {MANIFEST_NAME})),
        family=family or detected,
        tiny=tiny,
        source=source,
        licence=licence,
        facts=dict(facts),
    )
    if not manifest.files:
        raise ManifestMismatch(f"{model_dir} holds no file to pin")
    path = model_dir / MANIFEST_NAME
    path.write_text(json.dumps(manifest.as_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_manifest(model_dir: Path) -> Manifest:
    """The manifest as written (nothing checked against the files: see verify_manifest)."""
    path = model_dir / MANIFEST_NAME
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as unreadable:
        raise ManifestMismatch(
            f"{model_dir} has no readable {MANIFEST_NAME} (pin the weights with `likeness model manifest`)"
        ) from unreadable
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise ManifestMismatch(f"{path} is not a {MANIFEST_FORMAT} manifest")
    try:
        return _parse(document)
    except (TypeError, ValueError, KeyError) as malformed:
        raise ManifestMismatch(f"{path} is malformed: {malformed}") from malformed


def _parse(document: dict[str, object]) -> Manifest:
    pinned = document["files"]
    if not isinstance(pinned, dict) or not pinned:
        raise ValueError("it pins no file")
    files = {str(name): FileEntry(str(e["sha256"]), int(e["size"])) for name, e in pinned.items()}
    family = document.get("family")
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}")
    return Manifest(
        files=files,
        family=family,  # checked against FAMILIES above
        tiny=document.get("tiny") is True,
        source=str(document.get("source", "")),
        licence=str(document.get("licence", "")),
        facts={key: value for key, value in document.items() if key not in _KNOWN_KEYS},
    )


def _named(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMED])
    return shown + (f" and {len(names) - _NAMED} more" if len(names) > _NAMED else "")


def manifest_sha256(model_dir: Path) -> str:
    """The SHA-256 of the manifest file itself: pinned in the deployment's settings, it makes the manifest
    on the weights' volume trustworthy (whoever can rewrite the volume could rewrite a manifest there)."""
    return file_sha256(model_dir / MANIFEST_NAME)


def verify_manifest(model_dir: Path, pinned_sha256: str = "") -> Manifest:
    """The manifest of model_dir, after checking every file against it (raises ManifestMismatch).
    pinned_sha256: the manifest file's own digest, when the deployment pins it."""
    if not model_dir.is_dir():
        raise ManifestMismatch(f"model directory not found: {model_dir}")
    manifest = read_manifest(model_dir)
    if pinned_sha256 and manifest_sha256(model_dir) != pinned_sha256.lower():
        raise ManifestMismatch(
            f"{model_dir / MANIFEST_NAME} is not the manifest the deployment pins (its SHA-256 differs)"
        )
    actual = directory_files(model_dir, {MANIFEST_NAME})
    missing = sorted(set(manifest.files) - set(actual))
    if missing:
        raise ManifestMismatch(f"{model_dir}: file missing (pinned by its manifest): {_named(missing)}")
    extra = sorted(set(actual) - set(manifest.files))
    if extra:
        raise ManifestMismatch(f"{model_dir}: file not in its manifest: {_named(extra)}")
    resized = [name for name, path in actual.items() if path.stat().st_size != manifest.files[name].size]
    if resized:
        raise ManifestMismatch(f"{model_dir}: size differs from its manifest: {_named(resized)}")
    hashed = hash_files(actual)
    changed = [name for name, entry in hashed.items() if entry.sha256 != manifest.files[name].sha256]
    if changed:
        raise ManifestMismatch(f"{model_dir}: SHA-256 differs from its manifest: {_named(changed)}")
    _check_family(model_dir, manifest)
    return manifest


def _check_family(model_dir: Path, manifest: Manifest) -> None:
    """A manifest whose family disagrees with the pipeline's own configs was written for other weights."""
    detected = detect_family(model_dir)
    if manifest.family is not None and detected is not None and manifest.family != detected:
        raise ManifestMismatch(
            f"{model_dir}: its manifest says {manifest.family}, its configs a {PIPELINE_CLASS[detected]} "
            f"of family {detected}"
        )


if __name__ == "__main__":  # pragma: no cover - operator tool (`likeness model manifest` has the options)
    for argument in sys.argv[1:]:
        print(write_manifest(Path(argument)))
