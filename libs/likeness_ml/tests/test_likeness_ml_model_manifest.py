"""The one manifest format of pinned weights: what it records, every way a directory can differ from it
(each refusal naming the file), the tiny model refused in production, the check's metrics, and hashing as
a stream (a file is never read whole into memory)."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from likeness_ml.digests import file_sha256
from likeness_ml.model_manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    ManifestMismatch,
    manifest_sha256,
    read_manifest,
    verify_manifest,
    write_manifest,
)
from likeness_ml.pinned_weights import TinyModelRefused, require_pinned, verify_pinned

UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"


def _weights(root: Path, family_config: dict[str, object] | None = None) -> Path:
    """A stand-in pipeline directory: configs and weight files (content is all that is checked)."""
    (root / "unet").mkdir(parents=True)
    (root / "vae").mkdir()
    config = family_config or {"cross_attention_dim": 768}
    (root / "unet" / "config.json").write_text(json.dumps(config))
    (root / UNET_WEIGHTS).write_bytes(bytes(range(256)) * 64)
    (root / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"vae" * 100)
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return root


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_the_manifest_records_every_file_with_its_digest_and_size_and_the_provenance(tmp_path: Path) -> None:
    model = _weights(tmp_path / "m")
    write_manifest(model, source="https://example.invalid/sd15", licence="CreativeML-OpenRAIL-M")
    document = json.loads((model / MANIFEST_NAME).read_text())
    assert document["format"] == MANIFEST_FORMAT
    assert document["family"] == "sd15"  # read from unet/config.json
    assert (document["source"], document["licence"], document["tiny"]) == (
        "https://example.invalid/sd15",
        "CreativeML-OpenRAIL-M",
        False,
    )
    unet = (model / UNET_WEIGHTS).read_bytes()
    assert document["files"][UNET_WEIGHTS] == {"sha256": hashlib.sha256(unet).hexdigest(), "size": len(unet)}
    assert set(document["files"]) == {
        "model_index.json",
        "unet/config.json",
        UNET_WEIGHTS,
        "vae/diffusion_pytorch_model.safetensors",
    }
    manifest = verify_manifest(model)
    assert manifest == read_manifest(model)
    assert manifest.total_bytes == sum(entry["size"] for entry in document["files"].values())


def test_the_family_comes_from_the_configs_and_a_contradicting_one_is_refused(tmp_path: Path) -> None:
    sdxl = _weights(tmp_path / "xl", {"cross_attention_dim": 2048, "addition_embed_type": "text_time"})
    write_manifest(sdxl)
    assert read_manifest(sdxl).family == "sdxl"
    with pytest.raises(ManifestMismatch, match="holds a sdxl pipeline, not sd15"):
        write_manifest(sdxl, family="sd15")
    with pytest.raises(ManifestMismatch, match="unknown family"):
        write_manifest(sdxl, family="sd3")  # type: ignore[arg-type]
    # A manifest edited to name another family than the configs say is refused at verification.
    document = json.loads((sdxl / MANIFEST_NAME).read_text())
    document["family"] = "sd15"
    (sdxl / MANIFEST_NAME).write_text(json.dumps(document))
    with pytest.raises(ManifestMismatch, match="its manifest says sd15"):
        verify_manifest(sdxl)


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        (
            lambda m: _flip_one_byte(m / UNET_WEIGHTS),
            r"SHA-256 differs from its manifest: unet/diff",
        ),
        (lambda m: (m / UNET_WEIGHTS).unlink(), r"file missing \(pinned by its manifest\): unet/diffusion"),
        (
            lambda m: (m / "unet" / "extra.bin").write_bytes(b"x"),
            r"not in its manifest: unet/extra\.bin",
        ),
        (
            lambda m: (m / UNET_WEIGHTS).write_bytes((m / UNET_WEIGHTS).read_bytes()[:-1]),
            r"size differs from its manifest: unet/diffusion_pytorch",
        ),
        (lambda m: (m / MANIFEST_NAME).unlink(), r"has no readable likeness-manifest\.json"),
        (lambda m: (m / MANIFEST_NAME).write_text('{"format": "likeness-manifest/1"}'), "is not a"),
        (
            lambda m: (m / MANIFEST_NAME).write_text(json.dumps({"format": MANIFEST_FORMAT, "files": {}})),
            "pins no file",
        ),
    ],
    ids=["one-byte", "missing", "extra", "truncated", "no-manifest", "old-format", "empty"],
)
def test_every_difference_from_the_manifest_is_refused_naming_the_file(
    tmp_path: Path, change: object, refusal: str
) -> None:
    model = _weights(tmp_path / "m")
    write_manifest(model)
    verify_manifest(model)  # as written: accepted
    change(model)  # type: ignore[operator]
    with pytest.raises(ManifestMismatch, match=refusal):
        verify_manifest(model)


def test_production_refuses_weights_marked_tiny_and_development_takes_them(tmp_path: Path) -> None:
    model = _weights(tmp_path / "m")
    write_manifest(model, tiny=True)
    pinned = manifest_sha256(model)
    assert verify_pinned(model, "base_model", production=False).tiny
    with pytest.raises(TinyModelRefused, match="tiny random-weight test model"):
        verify_pinned(model, "base_model", production=True, manifest_sha256=pinned)
    with pytest.raises(SystemExit, match=r"trainer-worker refuses to start: base model not pinned: .*tiny"):
        require_pinned(model, "base_model", production=True, process="trainer-worker", manifest_sha256=pinned)
    write_manifest(model)  # real weights (not marked tiny): production takes them
    verify_pinned(model, "base_model", production=True, manifest_sha256=manifest_sha256(model))


def test_the_deployment_pins_the_manifest_itself_and_production_requires_it(tmp_path: Path) -> None:
    model = _weights(tmp_path / "m")
    write_manifest(model, source="https://example.invalid/reviewed")
    pinned = manifest_sha256(model)
    verify_manifest(model, pinned)
    # Whoever can rewrite the volume can re-pin changed weights with a manifest of their own: the digest
    # the deployment holds no longer matches it.
    _flip_one_byte(model / UNET_WEIGHTS)
    write_manifest(model, source="https://example.invalid/reviewed")
    verify_manifest(model)  # consistent with itself...
    with pytest.raises(ManifestMismatch, match="not the manifest the deployment pins"):
        verify_manifest(model, pinned)  # ...but not the reviewed one
    with pytest.raises(ManifestMismatch, match="set LIKENESS_SAFETY_MODEL_MANIFEST_SHA256"):
        verify_pinned(model, "safety_classifier", production=True)


def test_the_check_reports_its_duration_and_size_as_metrics(tmp_path: Path) -> None:
    model = _weights(tmp_path / "m")
    write_manifest(model)
    manifest = verify_pinned(model, "safety_classifier", production=False)
    labels = {"weights": "safety_classifier"}
    assert REGISTRY.get_sample_value("likeness_weights_verified_bytes", labels) == manifest.total_bytes
    seconds = REGISTRY.get_sample_value("likeness_weights_verify_seconds", labels)
    assert seconds is not None
    assert seconds > 0


def test_files_are_hashed_as_a_stream_never_read_whole(tmp_path: Path) -> None:
    big = tmp_path / "weights.bin"
    size = 48 << 20
    with big.open("wb") as out:
        for index in range(size >> 20):
            out.write(bytes([index]) * (1 << 20))
    tracemalloc.start()
    try:
        digest = file_sha256(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == hashlib.sha256(big.read_bytes()).hexdigest()
    assert peak < 4 << 20, f"hashing a {size >> 20} MiB file held {peak >> 20} MiB at once"
