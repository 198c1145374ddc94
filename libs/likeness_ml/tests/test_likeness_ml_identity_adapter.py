"""The identity adapter (IP-Adapter plus-face): the tiny one is written in the published checkpoint layout and
loads through diffusers' own loader, on both families; embeddings have the plus projection's shapes; the
adapter changes images only while attached; FaceID and misfitting weights are refused; it is pinned."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from likeness_ml.base_model import BasePipeline, load_pipeline
from likeness_ml.identity_adapter import (
    ADAPTER_WEIGHTS,
    AdapterUnusable,
    check_plus_face,
    face_embeds,
    identity_attached,
    load_identity_adapter,
)
from likeness_ml.model_manifest import ManifestMismatch, manifest_sha256, read_manifest
from likeness_ml.pinned_weights import TinyModelRefused, verify_pinned
from likeness_ml.tiny_identity_adapter import tiny_projection, write_tiny_identity_adapter


def _photo(seed: int) -> PIL.Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (96, 80, 3), dtype=np.uint8)
    return PIL.Image.fromarray(pixels)


def _render(pipe: BasePipeline, **extra: object) -> np.ndarray:
    generator = torch.Generator().manual_seed(7)
    images: np.ndarray = pipe(
        prompt="a headshot", num_inference_steps=2, generator=generator, output_type="np", **extra
    ).images
    return images


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return write_tiny_identity_adapter(tmp_path_factory.mktemp("adapter"), tiny_model_dir)


@pytest.fixture(scope="module")
def sdxl_adapter_dir(tmp_path_factory: pytest.TempPathFactory, tiny_sdxl_model_dir: Path) -> Path:
    return write_tiny_identity_adapter(tmp_path_factory.mktemp("adapter-sdxl"), tiny_sdxl_model_dir)


def test_tiny_adapter_is_deterministic_and_pinned(
    tmp_path: Path, adapter_dir: Path, tiny_model_dir: Path
) -> None:
    again = write_tiny_identity_adapter(tmp_path / "again", tiny_model_dir)
    assert read_manifest(again).digests() == read_manifest(adapter_dir).digests()
    manifest = verify_pinned(adapter_dir, "identity_adapter", production=False)
    assert (manifest.family, manifest.tiny) == ("sd15", True)
    assert manifest.facts["variant"] == "ip-adapter-plus-face"
    with pytest.raises(TinyModelRefused):
        verify_pinned(
            adapter_dir, "identity_adapter", production=True, manifest_sha256=manifest_sha256(adapter_dir)
        )


def test_a_changed_byte_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    adapter = write_tiny_identity_adapter(tmp_path / "adapter", tiny_model_dir)
    weights = adapter / ADAPTER_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ManifestMismatch, match=ADAPTER_WEIGHTS):
        verify_pinned(adapter, "identity_adapter", production=False)


def test_published_layout_round_trips_through_diffusers(tiny_model_dir: Path, adapter_dir: Path) -> None:
    """What diffusers converts back from the checkpoint layout (fused `to_kv`, `0.norm1`, `1.1`, ...) is
    exactly the projection the writer started from: the layout is the published one, not our own."""
    pipe = load_pipeline(tiny_model_dir)
    adapter = load_identity_adapter(pipe, adapter_dir)
    loaded = {
        name.removeprefix("image_projection_layers.0."): tensor
        for name, tensor in adapter.projection.state_dict().items()
    }
    expected = tiny_projection(int(pipe.unet.config.cross_attention_dim)).state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[name], expected[name]) for name in expected)
    with safe_open(str(adapter_dir / ADAPTER_WEIGHTS), framework="pt") as weights:
        names = list(weights.keys())
    assert "image_proj.layers.0.0.to_kv.weight" in names
    assert adapter.tokens == 4


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_embedding_shapes_and_effect(
    family: str,
    tiny_model_dir: Path,
    tiny_sdxl_model_dir: Path,
    adapter_dir: Path,
    sdxl_adapter_dir: Path,
) -> None:
    base, adapter_path = (
        (tiny_model_dir, adapter_dir) if family == "sd15" else (tiny_sdxl_model_dir, sdxl_adapter_dir)
    )
    pipe = load_pipeline(base)
    before = _render(pipe)
    adapter = load_identity_adapter(pipe, adapter_path)
    # Loaded but not attached: the pipeline renders exactly as it did.
    assert pipe.unet.encoder_hid_proj is None
    np.testing.assert_array_equal(_render(pipe), before)

    embeds = face_embeds(pipe, adapter, _photo(1))
    # Penultimate CLIP hidden states: the class token and 4x4 patches, at the encoder's width.
    assert embeds.photo.shape == embeds.blank.shape == (1, 17, 32)
    assert [e.shape for e in embeds.for_pipeline(guided=True)] == [(2, 1, 17, 32)]
    other = face_embeds(pipe, adapter, _photo(2))
    with identity_attached(pipe, adapter, scale=1.0):
        first = _render(pipe, ip_adapter_image_embeds=embeds.for_pipeline(guided=True))
        second = _render(pipe, ip_adapter_image_embeds=other.for_pipeline(guided=True))
    assert np.abs(first - before).max() > 1e-3
    assert np.abs(first - second).max() > 1e-4  # the photo steers the image
    # Detached again: bit-identical to the pipeline that never saw the adapter.
    np.testing.assert_array_equal(_render(pipe), before)


def test_adapter_of_another_base_model_is_refused(tiny_sdxl_model_dir: Path, adapter_dir: Path) -> None:
    pipe = load_pipeline(tiny_sdxl_model_dir)
    before = _render(pipe)
    with pytest.raises(AdapterUnusable, match="does not fit"):
        load_identity_adapter(pipe, adapter_dir)
    np.testing.assert_array_equal(_render(pipe), before)


@pytest.mark.parametrize(
    ("key", "reason"),
    [("image_proj.norm.weight", "FaceID"), ("image_proj.proj.weight", "not the plus variant")],
)
def test_other_variants_are_refused(tmp_path: Path, adapter_dir: Path, key: str, reason: str) -> None:
    (tmp_path / "image_encoder").mkdir()
    (tmp_path / "image_encoder" / "config.json").write_bytes(
        (adapter_dir / "image_encoder" / "config.json").read_bytes()
    )
    weights = {key: torch.zeros(4, 4), "ip_adapter.1.to_k_ip.weight": torch.zeros(4, 4)}
    save_file(weights, str(tmp_path / ADAPTER_WEIGHTS))
    with pytest.raises(AdapterUnusable, match=reason):
        check_plus_face(tmp_path)
