"""A single-file checkpoint in the original LDM/CompVis key layout (the form most base weights are
published in) turned into a pinned diffusers directory, offline.

diffusers' single-file loading converts the weights (`from_single_file` with `local_files_only=True` and
`config=` the operator's local directory of component configs and tokenizer files: nothing is fetched);
the pipeline is saved with `save_pretrained` as safetensors and pinned by a `likeness-manifest.json` that
records the checkpoint it came from (name and SHA-256), its family, source and licence. Only
`.safetensors` checkpoints are read: a pickled `.ckpt` could run code on load.

The result is written to a scratch folder beside `out` and renamed into place, so `out` is either
complete and pinned or absent.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline
from safetensors import SafetensorError, safe_open

from likeness_ml.digests import file_sha256
from likeness_ml.model_manifest import Manifest, verify_manifest, write_manifest
from likeness_ml.pipeline_layout import (
    IMPORT_CONFIG_FILES,
    PIPELINE_CLASS,
    WeightsFamily,
    missing_config_files,
)

_PIPELINES: dict[WeightsFamily, type[DiffusionPipeline]] = {
    "sd15": StableDiffusionPipeline,
    "sd2": StableDiffusionPipeline,
    "sdxl": StableDiffusionXLPipeline,
}
#: Components a published model_index.json may list that an import never takes: SD's own safety checker
#: and its image processor (outputs go through the renderer's gates instead), SDXL's optional image encoder.
#: Passed as None, so their configs and weights are not needed.
_NOT_IMPORTED: dict[WeightsFamily, dict[str, None]] = {
    "sd15": {"safety_checker": None, "feature_extractor": None, "image_encoder": None},
    "sd2": {"safety_checker": None, "feature_extractor": None, "image_encoder": None},
    "sdxl": {"image_encoder": None, "feature_extractor": None},
}
#: A key every LDM-layout Stable Diffusion checkpoint has (the UNet's input convolution).
_UNET_PROBE = "model.diffusion_model.input_blocks.0.0.weight"


class ImportRefused(ValueError):
    """The checkpoint, the config directory or the output folder cannot be used; nothing was written."""


def needed_config_files(family: WeightsFamily) -> tuple[str, ...]:
    return IMPORT_CONFIG_FILES[family]


def _checkpoint_dtype(checkpoint: Path) -> torch.dtype:
    """The UNet's stored precision (from one small tensor), kept so an fp16 file stays fp16."""
    try:
        with safe_open(str(checkpoint), framework="pt") as opened:
            if _UNET_PROBE not in opened.keys():  # noqa: SIM118 - safe_open has keys(), no __contains__
                raise ImportRefused(f"{checkpoint.name} is not a Stable Diffusion checkpoint in LDM layout")
            dtype: torch.dtype = opened.get_tensor(_UNET_PROBE).dtype
    except (OSError, RuntimeError, SafetensorError) as unreadable:  # a file that is not one
        raise ImportRefused(
            f"{checkpoint.name} is not a readable safetensors file: {unreadable}"
        ) from unreadable
    return dtype


def _check_inputs(checkpoint: Path, family: WeightsFamily, config_dir: Path, out_dir: Path) -> None:
    if checkpoint.suffix != ".safetensors" or not checkpoint.is_file():
        raise ImportRefused(
            f"{checkpoint}: a .safetensors file is needed (pickled checkpoints are never read)"
        )
    if not config_dir.is_dir():
        raise ImportRefused(f"config directory not found: {config_dir}")
    missing = missing_config_files(config_dir, family)
    if missing:
        raise ImportRefused(f"{config_dir} lacks what a {family} import needs: {', '.join(missing)}")
    index = json.loads((config_dir / "model_index.json").read_text(encoding="utf-8"))
    if index.get("_class_name") != PIPELINE_CLASS[family]:
        raise ImportRefused(
            f"{config_dir}/model_index.json describes a {index.get('_class_name')}, not a {family} "
            f"{PIPELINE_CLASS[family]}"
        )
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ImportRefused(f"{out_dir} exists and is not empty (imports never overwrite weights)")


def import_single_file(
    checkpoint: Path,
    family: WeightsFamily,
    config_dir: Path,
    out_dir: Path,
    *,
    source: str = "",
    licence: str = "",
) -> Manifest:
    """Converts checkpoint into a pinned diffusers directory at out_dir; returns its verified manifest."""
    _check_inputs(checkpoint, family, config_dir, out_dir)
    dtype = _checkpoint_dtype(checkpoint)
    try:
        pipe = _PIPELINES[family].from_single_file(
            str(checkpoint),
            config=str(config_dir),
            local_files_only=True,
            torch_dtype=dtype,
            **_NOT_IMPORTED[family],
        )
    except (OSError, RuntimeError, ValueError, KeyError) as unusable:
        raise ImportRefused(
            f"{checkpoint.name} does not load as a {family} pipeline: {unusable}"
        ) from unusable
    scratch = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        pipe.save_pretrained(scratch, safe_serialization=True)
        write_manifest(
            scratch,
            family=family,
            source=source,
            licence=licence,
            imported_from={"file": checkpoint.name, "sha256": file_sha256(checkpoint)},
        )
        if out_dir.exists():
            out_dir.rmdir()  # checked empty above
        scratch.rename(out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return verify_manifest(out_dir)
