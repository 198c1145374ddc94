"""The output safety classifier loads only pinned weights, through the same from_pretrained path real ones
take, and the tiny one used in tests is reproducible and can be planted with a verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from likeness_ml.digests import directory_digests
from likeness_ml.model_manifest import MANIFEST_NAME, ManifestMismatch, verify_manifest, write_manifest
from likeness_ml.safety_classifier import load_safety_classifier
from likeness_ml.tiny_safety import TINY_SAFETY_LABELS, write_tiny_safety_classifier

CPU = torch.device("cpu")


def _images() -> list[PIL.Image.Image]:
    rng = np.random.default_rng(0)
    return [PIL.Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)) for _ in range(3)]


def test_same_seed_gives_byte_identical_files_and_a_pinning_manifest(tmp_path: Path) -> None:
    first = write_tiny_safety_classifier(tmp_path / "a", seed=0)
    again = write_tiny_safety_classifier(tmp_path / "b", seed=0)
    other = write_tiny_safety_classifier(tmp_path / "c", seed=1)
    assert directory_digests(first) == directory_digests(again)
    assert directory_digests(other)["model.safetensors"] != directory_digests(first)["model.safetensors"]
    manifest = verify_manifest(first)
    assert manifest.digests() == directory_digests(first, exclude={MANIFEST_NAME})
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= set(manifest.files)
    assert manifest.tiny


def test_probabilities_per_image_by_label_from_one_batch(tmp_path: Path) -> None:
    classifier = load_safety_classifier(write_tiny_safety_classifier(tmp_path / "m"), CPU)
    assert classifier.labels == list(TINY_SAFETY_LABELS)
    rows = classifier.probabilities(_images())
    assert len(rows) == 3
    for row in rows:
        assert set(row) == set(TINY_SAFETY_LABELS)
        assert sum(row.values()) == pytest.approx(1.0, abs=1e-5)
    assert rows[0] != rows[1], "the verdict depends on the image"
    assert classifier.probabilities([]) == []


def test_a_planted_bias_decides_the_verdict(tmp_path: Path) -> None:
    flags_all = load_safety_classifier(
        write_tiny_safety_classifier(tmp_path / "n", label_bias={"nsfw": 20}), CPU
    )
    flags_none = load_safety_classifier(
        write_tiny_safety_classifier(tmp_path / "s", label_bias={"normal": 20}), CPU
    )
    assert all(row["nsfw"] > 0.99 for row in flags_all.probabilities(_images()))
    assert all(row["nsfw"] < 0.01 for row in flags_none.probabilities(_images()))


def test_weights_that_differ_from_their_manifest_are_refused(tmp_path: Path) -> None:
    model_dir = write_tiny_safety_classifier(tmp_path / "m")
    weights = model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ManifestMismatch, match=r"model\.safetensors"):
        load_safety_classifier(model_dir, CPU)
    write_manifest(model_dir)  # the operator pins the new files: now they load
    load_safety_classifier(model_dir, CPU)
    (model_dir / "extra.bin").write_bytes(b"x")
    with pytest.raises(ManifestMismatch, match=r"extra\.bin"):
        verify_manifest(model_dir)


def test_a_directory_without_a_manifest_is_refused(tmp_path: Path) -> None:
    model_dir = write_tiny_safety_classifier(tmp_path / "m")
    (model_dir / MANIFEST_NAME).unlink()
    with pytest.raises(ManifestMismatch, match="no readable"):
        load_safety_classifier(model_dir, CPU)
    with pytest.raises(ManifestMismatch, match="not found"):
        verify_manifest(tmp_path / "missing")
