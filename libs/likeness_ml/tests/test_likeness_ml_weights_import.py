"""`likeness model import`: a single-file checkpoint in the original LDM layout becomes a pinned diffusers
directory, offline, that renders exactly what the directory it was exported from renders (SD 1.5- and
SDXL-shaped tiny models, the same seed giving the same pixels); and every input it cannot use is refused,
naming what is wrong, with nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors import safe_open
from transformers import CLIPTextModelWithProjection

from likeness_ml.base_model import load_pipeline
from likeness_ml.digests import file_sha256
from likeness_ml.ldm_export import (
    SDXL_TEXT_ENCODER,
    SDXL_TEXT_ENCODER_2,
    TEXT_ENCODER,
    UNET,
    VAE,
    export_single_file,
)
from likeness_ml.model_manifest import verify_manifest
from likeness_ml.pipeline_layout import WeightsFamily
from likeness_ml.tiny_model import save_tiny_pipeline
from likeness_ml.tiny_sdxl_model import build_tiny_sdxl_pipeline
from likeness_ml.weights_import import ImportRefused, import_single_file, needed_config_files

CPU = torch.device("cpu")


def _config_dir(model_dir: Path, into: Path, family: WeightsFamily = "sd15") -> Path:
    """Exactly the files the import says it needs, and nothing else (no weights); model_index.json lists the
    components a published SD 1.5 or SDXL one does, whose files the import does not need."""
    for name in needed_config_files(family):
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / name, into / name)
    index = json.loads((into / "model_index.json").read_text())
    index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    if family == "sdxl":
        index["image_encoder"] = [None, None]
    else:
        index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
    (into / "model_index.json").write_text(json.dumps(index))
    return into


@pytest.fixture(scope="module")
def single_file(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_single_file(tiny_model_dir, tmp_path_factory.mktemp("export") / "tiny-sd15.safetensors")


def _tiny_sdxl_with_distinct_encoders(out_dir: Path) -> Path:
    """The tiny SDXL model with its second text encoder wider than the first (48 against 32), as real SDXL's
    are (1280 against 768): diffusers' single-file loading tells the two encoders apart by their width, so
    the tiny model's equal widths would give it the first encoder's weights for both."""
    pipe = build_tiny_sdxl_pipeline(seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        config = pipe.text_encoder_2.config.to_dict() | {"hidden_size": 48}
        text_encoder_2 = CLIPTextModelWithProjection(type(pipe.text_encoder_2.config)(**config)).eval()
        width = pipe.text_encoder.config.hidden_size + 48  # the UNet attends to both, concatenated
        unet = UNet2DConditionModel.from_config({**pipe.unet.config, "cross_attention_dim": width})
    pipe.register_modules(text_encoder_2=text_encoder_2, unet=unet)
    return save_tiny_pipeline(pipe, out_dir, 0, ("tokenizer", "tokenizer_2"))


def _render(model_dir: Path) -> np.ndarray:
    pipe = load_pipeline(model_dir, CPU)
    generator = torch.Generator("cpu").manual_seed(1234)
    images = pipe(
        "a portrait photo", num_inference_steps=4, generator=generator, output_type="np", guidance_scale=5.0
    ).images
    return np.asarray(images)


def test_the_export_is_in_the_original_ldm_layout(single_file: Path) -> None:
    with safe_open(str(single_file), framework="pt") as opened:
        keys = list(opened.keys())
    assert all(key.startswith((UNET, VAE, TEXT_ENCODER)) for key in keys)
    assert f"{UNET}input_blocks.0.0.weight" in keys
    assert f"{UNET}middle_block.1.proj_in.weight" in keys
    assert f"{VAE}encoder.mid.attn_1.q.weight" in keys
    assert f"{TEXT_ENCODER}text_model.embeddings.position_embedding.weight" in keys
    assert not any(".down_blocks." in key or ".resnets." in key for key in keys)


def test_an_imported_single_file_renders_identical_images_to_the_original(
    tiny_model_dir: Path, single_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "imported"
    manifest = import_single_file(
        single_file,
        "sd15",
        _config_dir(tiny_model_dir, tmp_path / "configs"),
        out,
        source="https://example.invalid/tiny-sd15.safetensors",
        licence="Apache-2.0",
    )
    assert manifest == verify_manifest(out)
    assert (manifest.family, manifest.tiny, manifest.licence) == ("sd15", False, "Apache-2.0")
    assert manifest.facts["imported_from"] == {"file": single_file.name, "sha256": file_sha256(single_file)}
    assert "unet/diffusion_pytorch_model.safetensors" in manifest.files
    original, imported = _render(tiny_model_dir), _render(out)
    assert original.shape == (1, 64, 64, 3)
    assert np.array_equal(original, imported), "the same seed must give the same pixels"


def test_an_imported_sdxl_single_file_renders_identical_images_to_the_original(tmp_path: Path) -> None:
    original = _tiny_sdxl_with_distinct_encoders(tmp_path / "sdxl")
    single_file = export_single_file(original, tmp_path / "tiny-sdxl.safetensors")
    with safe_open(str(single_file), framework="pt") as opened:
        keys = set(opened.keys())
    assert f"{SDXL_TEXT_ENCODER}text_model.embeddings.position_embedding.weight" in keys
    assert f"{SDXL_TEXT_ENCODER_2}transformer.resblocks.0.attn.in_proj_weight" in keys  # OpenCLIP layout
    assert f"{UNET}label_emb.0.0.weight" in keys  # SDXL's pooled-text and time-id embedding
    out = tmp_path / "imported"
    manifest = import_single_file(
        single_file, "sdxl", _config_dir(original, tmp_path / "configs", "sdxl"), out
    )
    assert manifest.family == "sdxl"
    original_images, imported_images = _render(original), _render(out)
    assert np.array_equal(original_images, imported_images), "the same seed must give the same pixels"


def test_inputs_the_import_cannot_use_are_refused_and_nothing_is_written(
    tiny_model_dir: Path, single_file: Path, tmp_path: Path
) -> None:
    configs = _config_dir(tiny_model_dir, tmp_path / "configs")
    out = tmp_path / "out"
    (configs / "tokenizer" / "merges.txt").unlink()
    with pytest.raises(ImportRefused, match=r"lacks what a sd15 import needs: tokenizer/merges\.txt"):
        import_single_file(single_file, "sd15", configs, out)
    shutil.copyfile(tiny_model_dir / "tokenizer" / "merges.txt", configs / "tokenizer" / "merges.txt")
    with pytest.raises(ImportRefused, match=r"text_encoder_2/config\.json"):
        import_single_file(single_file, "sdxl", configs, out)
    pickled = tmp_path / "weights.ckpt"
    pickled.write_bytes(b"not read")
    with pytest.raises(ImportRefused, match="pickled checkpoints are never read"):
        import_single_file(pickled, "sd15", configs, out)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(ImportRefused, match="not a readable safetensors file"):
        import_single_file(garbage, "sd15", configs, out)
    out.mkdir()
    (out / "keep.txt").write_text("an operator's file")
    with pytest.raises(ImportRefused, match="not empty"):
        import_single_file(single_file, "sd15", configs, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not any(p.name.startswith(".out.partial") for p in tmp_path.iterdir())
