"""The tiny pipeline loads through the real from_pretrained path and is reproducible to the byte."""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import StableDiffusionPipeline
from transformers import CLIPTokenizer

from likeness_ml.digests import directory_digests
from likeness_ml.model_manifest import write_manifest
from likeness_ml.tiny_model import TINY_MANIFEST_NAME, is_tiny_model, read_tiny_manifest, write_tiny_pipeline
from likeness_ml.tiny_tokenizer import MODEL_MAX_LENGTH


def test_loads_with_from_pretrained_and_renders_64px(tiny_model_dir: Path) -> None:
    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a photo of ohwx person", num_inference_steps=2, output_type="pil").images[0]
    assert image.size == (64, 64)
    assert pipe.safety_checker is None
    assert pipe.tokenizer.model_max_length == MODEL_MAX_LENGTH


def test_same_seed_gives_byte_identical_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    again = write_tiny_pipeline(tmp_path / "again", seed=0)
    other = write_tiny_pipeline(tmp_path / "other", seed=1)
    assert directory_digests(again) == directory_digests(tiny_model_dir)
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert directory_digests(other)[weights] != directory_digests(tiny_model_dir)[weights]


def test_manifest_lists_the_sha256_of_every_file(tiny_model_dir: Path) -> None:
    manifest = read_tiny_manifest(tiny_model_dir)
    assert manifest is not None
    assert manifest.digests() == directory_digests(tiny_model_dir, exclude={TINY_MANIFEST_NAME})
    assert {
        "unet/diffusion_pytorch_model.safetensors",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
    } <= set(manifest.files)
    assert (manifest.tiny, manifest.family, manifest.facts["seed"]) == (True, "sd15", 0)
    assert is_tiny_model(tiny_model_dir)


def test_is_tiny_model_rejects_other_directories(tmp_path: Path) -> None:
    assert not is_tiny_model(tmp_path)
    (tmp_path / TINY_MANIFEST_NAME).write_text(json.dumps({"format": "something-else"}))
    assert not is_tiny_model(tmp_path)
    (tmp_path / TINY_MANIFEST_NAME).write_text("not json")
    assert not is_tiny_model(tmp_path)
    (tmp_path / "weights.safetensors").write_bytes(b"real weights")
    write_manifest(tmp_path, source="https://example.invalid/weights")  # pinned, but not marked tiny
    assert not is_tiny_model(tmp_path)


def test_offline_tokenizer_files_alone_make_a_working_clip_tokenizer(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    # Only the classic vocab.json + merges.txt (what older transformers releases read).
    for name in ("vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((tiny_model_dir / "tokenizer" / name).read_bytes())
    tokenizer = CLIPTokenizer(vocab=str(tmp_path / "vocab.json"), merges=str(tmp_path / "merges.txt"))
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("A photo of OHWX person").input_ids)
    assert tokens == [
        "<|startoftext|>",
        "a</w>",
        "photo</w>",
        "of</w>",
        "ohwx</w>",
        "person</w>",
        "<|endoftext|>",
    ]


def test_tokenizer_falls_back_to_bytes_for_unknown_text(tiny_model_dir: Path) -> None:
    tokenizer = CLIPTokenizer.from_pretrained(tiny_model_dir / "tokenizer")
    text = "zürich 東京 qqq"
    ids = tokenizer(text).input_ids
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
