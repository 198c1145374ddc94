"""The output safety classifier: a `ViTForImageClassification` (e.g. an NSFW/normal model) that the
operator provisions and pins like the base model, loaded only after its SHA-256 manifest checks out.

Preprocessing is the ViT image processor's (resize to the model's side, rescale to [0, 1], normalise with
the mean and std of its `preprocessor_config.json`), done here with PIL and torch so no torchvision is
needed. Not personal data; a worker loads it once and scores every output with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from transformers import ViTForImageClassification

from likeness_ml.base_model import select_device
from likeness_ml.model_manifest import verify_manifest

PREPROCESSOR_CONFIG = "preprocessor_config.json"
_DEFAULT_MEAN_STD = [0.5, 0.5, 0.5]


class SafetyClassifier:
    """Class probabilities per image, by the model's own label names (`config.id2label`)."""

    def __init__(self, model: ViTForImageClassification, mean: Sequence[float], std: Sequence[float]) -> None:
        self.model = model
        self.side = int(model.config.image_size)
        self.labels = [str(model.config.id2label[i]) for i in range(int(model.config.num_labels))]
        self._mean = torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1)

    def _pixels(self, images: Sequence[PIL.Image.Image]) -> torch.Tensor:
        rows = [
            np.asarray(
                image.convert("RGB").resize((self.side, self.side), PIL.Image.Resampling.BILINEAR),
                dtype=np.float32,
            )
            for image in images
        ]
        batch = torch.from_numpy(np.stack(rows)).permute(0, 3, 1, 2) / 255.0
        return (batch - self._mean) / self._std

    def probabilities(self, images: Sequence[PIL.Image.Image]) -> list[dict[str, float]]:
        """One {label: probability} per image, from one batched forward pass."""
        if not images:
            return []
        parameter = next(self.model.parameters())
        pixels = self._pixels(images).to(device=parameter.device, dtype=parameter.dtype)
        with torch.inference_mode():
            logits = self.model(pixel_values=pixels).logits
        probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return [
            {label: float(row[index]) for index, label in enumerate(self.labels)} for row in probabilities
        ]


def _mean_std(model_dir: Path) -> tuple[list[float], list[float]]:
    try:
        config = json.loads((model_dir / PREPROCESSOR_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return _DEFAULT_MEAN_STD, _DEFAULT_MEAN_STD
    return list(config.get("image_mean", _DEFAULT_MEAN_STD)), list(config.get("image_std", _DEFAULT_MEAN_STD))


def load_safety_classifier(model_dir: Path, device: torch.device | None = None) -> SafetyClassifier:
    """The pinned classifier in model_dir (ManifestMismatch if any file differs from the manifest)."""
    verify_manifest(model_dir)
    device = device or select_device()
    model = ViTForImageClassification.from_pretrained(
        str(model_dir),
        local_files_only=True,  # provisioned, pinned files: never the Hub
        use_safetensors=True,  # never unpickle
    )
    model = model.to(device).eval()
    model.requires_grad_(False)
    mean, std = _mean_std(model_dir)
    return SafetyClassifier(model, mean, std)
