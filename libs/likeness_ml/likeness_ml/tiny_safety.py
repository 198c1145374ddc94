"""A tiny random-weight safety classifier: `ViTForImageClassification` with the labels of an NSFW/normal
model, written with `save_pretrained` and pinned by a manifest, so tests and the dev stack load it through
exactly the path real weights take. The same seed gives byte-identical files.

`label_bias` plants a verdict: it is added to the classification head's bias, so e.g. {"nsfw": 20.0}
makes the classifier flag every image and {"normal": 20.0} flag none, whatever its random weights say.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import ViTConfig, ViTForImageClassification

from likeness_ml.model_manifest import write_manifest
from likeness_ml.safety_classifier import PREPROCESSOR_CONFIG

TINY_SAFETY_LABELS = ("normal", "nsfw")
_SIDE = 32


def build_tiny_safety_classifier(
    seed: int = 0, label_bias: Mapping[str, float] | None = None
) -> ViTForImageClassification:
    config = ViTConfig(
        image_size=_SIDE,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        id2label=dict(enumerate(TINY_SAFETY_LABELS)),
        label2id={label: index for index, label in enumerate(TINY_SAFETY_LABELS)},
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTForImageClassification(config).eval()
    with torch.no_grad():
        for label, bias in (label_bias or {}).items():
            model.classifier.bias[config.label2id[label]] += bias
    return model


def write_tiny_safety_classifier(
    out_dir: Path, seed: int = 0, label_bias: Mapping[str, float] | None = None
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    build_tiny_safety_classifier(seed, label_bias).save_pretrained(out_dir, safe_serialization=True)
    preprocessor = {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": _SIDE, "width": _SIDE},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    (out_dir / PREPROCESSOR_CONFIG).write_text(json.dumps(preprocessor, indent=2, sort_keys=True) + "\n")
    write_manifest(out_dir, tiny=True, seed=seed)
    return out_dir
