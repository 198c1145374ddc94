"""Identity score of a rendered headshot: how far its face is from the subject's face templates.

Uses the same dlib models as ingest (the CC0 face-recognition-models files), but only what a generated,
centred headshot needs: dlib's HOG frontal face detector to count faces, the 5-point landmarks to align
the one face, and the ResNet embedding, compared with the 128-D templates of the photos the model was
trained on (sealed beside the model by the trainer; for models from before that, ingest's templates of the
subject's accepted photos). The score is the distance to the mean template (dlib treats under 0.6 as the
same person). Nothing here logs: an embedding identifies a person.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlib
import numpy as np
import PIL.Image

from likeness_ml.face_templates import (
    EMBEDDING_SIZE,
    FloatArray,
    parse_photo_templates,
    read_photo_template,
)

_LANDMARKS_MODEL = "shape_predictor_5_face_landmarks.dat"
_EMBEDDING_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
# dlib's embedding network expects a 150 px chip aligned on the landmarks, with 25 % padding.
_CHIP_SIZE = 150
_CHIP_PADDING = 0.25
# HOG's window is 80 px: smaller images are upsampled before detection so a headshot's face fits.
_MIN_DETECT_SIDE = 320


def face_models_dir() -> Path:
    """Where pip put the face-recognition-models data files (the package itself is not imported: its
    __init__ needs pkg_resources, which modern setuptools removed)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face-recognition-models package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def read_template(blob: bytes) -> FloatArray | None:
    """The embedding in one of ingest's stored templates, or None for a layout this version cannot read."""
    return read_photo_template(blob)


def parse_templates(blobs: list[bytes]) -> FloatArray:
    """(n, 128) float32 embeddings of the readable templates among ingest's stored blobs."""
    return parse_photo_templates(blobs)


@dataclass(frozen=True)
class FaceScore:
    """faces: how many faces the detector found; distance: to the subject (None unless exactly one face
    and at least one template)."""

    faces: int
    distance: float | None

    def passes(self, max_distance: float, need_distance: bool) -> bool:
        if self.faces != 1:
            return False
        if self.distance is None:
            return not need_distance
        return self.distance <= max_distance


class FaceScorer:
    """Loads the dlib models on first use; one lock serialises calls into them (dlib keeps buffers)."""

    def __init__(self, min_detection_score: float = 0.0, model_dir: Path | None = None) -> None:
        self.min_detection_score = min_detection_score
        self._model_dir = model_dir
        self._lock = threading.Lock()
        self._detector: Any = None
        self._landmarks: Any = None
        self._embedder: Any = None

    def _load(self) -> None:
        # Called with the lock held.
        if self._detector is not None:
            return
        model_dir = self._model_dir or face_models_dir()
        self._landmarks = dlib.shape_predictor(str(model_dir / _LANDMARKS_MODEL))
        self._embedder = dlib.face_recognition_model_v1(str(model_dir / _EMBEDDING_MODEL))
        self._detector = dlib.get_frontal_face_detector()

    def embed_faces(self, image: PIL.Image.Image) -> list[FloatArray]:
        """One 128-D embedding per face found (best detections first)."""
        rgb = image.convert("RGB")
        scale = max(1.0, _MIN_DETECT_SIDE / max(1, min(rgb.size)))
        if scale > 1.0:
            rgb = rgb.resize(
                (round(rgb.width * scale), round(rgb.height * scale)), PIL.Image.Resampling.LANCZOS
            )
        pixels = np.asarray(rgb, dtype=np.uint8)
        with self._lock:
            self._load()
            rectangles, scores, _ = self._detector.run(pixels, 0, self.min_detection_score)
            ranked = sorted(zip(scores, rectangles, strict=True), key=lambda pair: -pair[0])
            embeddings = []
            for _, rectangle in ranked:
                shape = self._landmarks(pixels, rectangle)
                chip = dlib.get_face_chip(pixels, shape, size=_CHIP_SIZE, padding=_CHIP_PADDING)
                embeddings.append(np.asarray(self._embedder.compute_face_descriptor(chip), dtype=np.float32))
        return embeddings

    def score(self, image: PIL.Image.Image, templates: FloatArray) -> FaceScore:
        embeddings = self.embed_faces(image)
        if len(embeddings) != 1 or len(templates) == 0:
            return FaceScore(faces=len(embeddings), distance=None)
        reference = templates.mean(axis=0)
        return FaceScore(faces=1, distance=float(np.linalg.norm(embeddings[0] - reference)))


__all__ = ["EMBEDDING_SIZE", "FaceScore", "FaceScorer", "FloatArray", "parse_templates", "read_template"]
