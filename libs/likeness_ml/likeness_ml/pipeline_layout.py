"""What a diffusers pipeline directory of each base-model family holds, read from its config files only
(no torch): which family it is, and which config and tokenizer files an offline import of a single-file
checkpoint needs beside the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, get_args

#: A pinned manifest's digest in settings: 64 lowercase hex digits, or nothing.
SHA256_OR_EMPTY = r"^([0-9a-f]{64})?$"
#: Families a manifest may name: the pipeline class and text encoders differ between them.
WeightsFamily = Literal["sd15", "sd2", "sdxl"]
FAMILIES: tuple[WeightsFamily, ...] = get_args(WeightsFamily)
#: The pipeline class each family loads as (`model_index.json`'s `_class_name`).
PIPELINE_CLASS: dict[WeightsFamily, str] = {
    "sd15": "StableDiffusionPipeline",
    "sd2": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
}
#: The classic CLIP tokenizer files (a `tokenizer.json` or `special_tokens_map.json` beside them is read too).
_TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")
_ONE_ENCODER = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    *(f"tokenizer/{name}" for name in _TOKENIZER_FILES),
)
#: Files `likeness model import` reads from the operator's config directory, per family (the component
#: configs and tokenizers of the diffusers layout; never weights).
IMPORT_CONFIG_FILES: dict[WeightsFamily, tuple[str, ...]] = {
    "sd15": _ONE_ENCODER,
    "sd2": _ONE_ENCODER,
    "sdxl": (
        *_ONE_ENCODER,
        "text_encoder_2/config.json",
        *(f"tokenizer_2/{name}" for name in _TOKENIZER_FILES),
    ),
}


def _json(path: Path) -> dict[str, object]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def detect_family(model_dir: Path) -> WeightsFamily | None:
    """The family of a diffusers pipeline directory from its configs; None when it is not one."""
    pipeline = _json(model_dir / "model_index.json").get("_class_name")
    unet = _json(model_dir / "unet" / "config.json")
    if pipeline == PIPELINE_CLASS["sdxl"] or unet.get("addition_embed_type") == "text_time":
        return "sdxl"
    if not unet:
        return None
    # cross_attention_dim is the text encoder's width: 1024 is SD 2's OpenCLIP; SD 1.x (and the tiny
    # model, built in its shape) have one CLIP encoder of another width.
    return "sd2" if unet.get("cross_attention_dim") == 1024 else "sd15"


def missing_config_files(config_dir: Path, family: WeightsFamily) -> list[str]:
    return [name for name in IMPORT_CONFIG_FILES[family] if not (config_dir / name).is_file()]
