"""The full-size plus-face writer for GPU benchmarks names and shapes its attention weights exactly as the
tiny adapter (which is loaded through diffusers in the identity adapter's tests) does, from the live UNet.
The ViT-H image encoder itself is too big to build in a unit test; the GPU script builds it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from likeness_ml import tiny_identity_adapter
from likeness_ml.identity_adapter_shaped import _ip_attention_weights, write_plus_face_shaped
from likeness_ml.tiny_sdxl_model import build_tiny_sdxl_pipeline


def test_attention_weights_match_the_tiny_adapters_layout() -> None:
    unet = build_tiny_sdxl_pipeline().unet
    ours = _ip_attention_weights(unet)
    reference = tiny_identity_adapter._ip_attention_weights(unet)
    assert {name: tensor.shape for name, tensor in ours.items()} == {
        name: tensor.shape for name, tensor in reference.items()
    }
    assert len(ours) == 2 * sum(1 for name in unet.attn_processors if name.endswith("attn2.processor"))


def test_a_unet_without_a_published_plus_face_shape_is_refused(tmp_path: Path) -> None:
    unet = build_tiny_sdxl_pipeline().unet  # cross-attention width 64: no published adapter has it
    with pytest.raises(ValueError, match="cross-attention width of 64"):
        write_plus_face_shaped(tmp_path, unet, torch.device("cpu"), torch.float32)
    assert not any(tmp_path.iterdir())
