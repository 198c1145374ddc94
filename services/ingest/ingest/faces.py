"""Face detection, landmarks and identity embeddings with dlib and the CC0 face-recognition-models files.

Detection is two-stage. dlib's HOG frontal face detector (fast on CPU) proposes faces on a downscaled
copy; each proposal that matters is then confirmed by dlib's CNN (MMOD) face detector run on a small
region around it only. HOG alone mistakes clothing patches and patterns for faces at scores real faces
also get, and CNN on the whole photo would cost seconds; the pair costs about 0.06 s per proposal.
Landmarks (dlib's 5-point model) and the 128-D embedding are computed on a full-resolution region around
the one face we keep. Nothing here logs: an embedding identifies a person.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlib
import numpy as np
from PIL import Image

_LANDMARKS_MODEL = "shape_predictor_5_face_landmarks.dat"
_EMBEDDING_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
_CONFIRM_MODEL = "mmod_human_face_detector.dat"

# HOG's window is 80 px: the detection copy is scaled so that the smallest face that must be found is
# this size in it, a little over the window. One upsampling step (small_faces) halves the smallest face
# found, at about four times the cost.
_DETECT_FACE_SIDE = 90
# The CNN detector finds faces of about 80 px and up, and its cost grows with the area it scans (an image
# pyramid of it). A proposal is confirmed in a region around it of (region side / box side, face px):
# tight, the whole face with a margin at 80 px (about 0.06 s); wide, twice the box side at 75 px (about
# 0.12 s), whose context lets the CNN see faces that are dark, washed out or blurred. Only proposals that
# HOG scored at least _SECOND_LOOK_MIN_SCORE get the wide look when the tight one finds nothing: real faces
# that fail the tight look score 0.4-0.7 there, the clothing and backdrop patches HOG mistakes about 0-0.2.
_TIGHT_CONFIRM = (1.4, 80.0)
_WIDE_CONFIRM = (2.0, 75.0)
_SECOND_LOOK_MIN_SCORE = 0.3
# Landmarks and embeddings need no more than this many pixels across the face box; larger faces are
# reduced first, which keeps the per-photo cost flat for 50 MP uploads.
_DESCRIBE_FACE_SIDE = 240
# dlib's embedding network expects a 150 px chip aligned on the landmarks, with 25 % padding.
_CHIP_SIZE = 150
_CHIP_PADDING = 0.25


def detection_min_side(min_face_fraction: float) -> int | None:
    """The shorter side a photo needs for :meth:`FaceAnalyzer.detect` to find faces of
    ``min_face_fraction`` in its fast pass: decoding more pixels than that gains detection nothing."""
    if min_face_fraction <= 0:
        return None
    return math.ceil(_DETECT_FACE_SIDE / min_face_fraction)


def default_model_dir() -> Path:
    """Where pip put the face-recognition-models data files.

    The package is not imported: its __init__ needs pkg_resources, which modern setuptools removed.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the face-recognition-models package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@dataclass(frozen=True)
class FaceBox:
    """A detected face, in pixel coordinates of the image it was found in (right/bottom exclusive)."""

    left: int
    top: int
    right: int
    bottom: int
    score: float

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def side(self) -> float:
        """Size of the face as one number (dlib boxes are square-ish)."""
        return math.sqrt(self.width * self.height)

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.left + self.right) / 2, (self.top + self.bottom) / 2)


@dataclass(frozen=True)
class FaceLandmarks:
    """dlib's five points in full-image pixel coordinates (pixel i's centre is at i): two corners of each
    eye and the base of the nose."""

    points: tuple[tuple[float, float], ...]

    @property
    def eye_on_image_left(self) -> tuple[float, float]:
        # Points 2 and 3 are the corners of the subject's right eye, which appears on the image's left.
        return _midpoint(self.points[2], self.points[3])

    @property
    def eye_on_image_right(self) -> tuple[float, float]:
        return _midpoint(self.points[0], self.points[1])

    @property
    def nose(self) -> tuple[float, float]:
        return self.points[4]


@dataclass(frozen=True)
class FaceDescription:
    landmarks: FaceLandmarks
    embedding: tuple[float, ...]


def _midpoint(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)


class FaceAnalyzer:
    """Loads the dlib models once, on first use, and serialises calls into them.

    dlib's embedding network keeps per-call buffers, so one analyzer must not run two photos at once; a
    lock makes sharing one instance between threads safe (calls simply queue).
    """

    def __init__(self, model_dir: Path | None = None) -> None:
        self._model_dir = model_dir
        self._lock = threading.Lock()
        self._detector: Any = None
        self._landmarks: Any = None
        self._embedder: Any = None
        self._confirmer: Any = None

    def _load(self) -> None:
        # Called with the lock held.
        if self._detector is not None:
            return
        model_dir = self._model_dir or default_model_dir()
        landmarks = dlib.shape_predictor(str(model_dir / _LANDMARKS_MODEL))
        embedder = dlib.face_recognition_model_v1(str(model_dir / _EMBEDDING_MODEL))
        confirmer = dlib.cnn_face_detection_model_v1(str(model_dir / _CONFIRM_MODEL))
        self._landmarks, self._embedder, self._confirmer = landmarks, embedder, confirmer
        self._detector = dlib.get_frontal_face_detector()

    def warm_up(self) -> None:
        """Load the models now (e.g. at service start) instead of on the first photo."""
        with self._lock:
            self._load()

    def detect(
        self,
        image: Image.Image,
        *,
        min_face_fraction: float,
        min_score: float,
        max_pixels: int,
        small_faces: bool = False,
    ) -> list[FaceBox]:
        """HOG face proposals scoring at least ``min_score``, best first, in ``image``'s pixel coordinates.

        HOG runs on a copy scaled (never enlarged, at most ``max_pixels``) so that a face of
        ``min_face_fraction`` of the shorter side spans about 90 px, just over HOG's window. With
        ``small_faces`` the copy is upsampled once and faces down to about half that size are proposed
        too, at about four times the cost. Proposals are cheap and can be wrong: :meth:`confirm` each one
        that matters.
        """
        width, height = image.size
        scale = min(1.0, math.sqrt(max_pixels / (width * height)))
        if min_face_fraction > 0:
            scale = min(scale, _DETECT_FACE_SIDE / (min_face_fraction * min(width, height)))
        if scale < 1.0:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            small = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        else:
            small = image
        pixels = np.array(small.convert("RGB"), dtype=np.uint8)
        with self._lock:
            self._load()
            rectangles, scores, _ = self._detector.run(pixels, 1 if small_faces else 0, min_score)
        sx = image.width / small.width
        sy = image.height / small.height
        faces = [
            _clip_box(
                FaceBox(
                    left=math.floor(rect.left() * sx),
                    top=math.floor(rect.top() * sy),
                    right=math.ceil((rect.right() + 1) * sx),
                    bottom=math.ceil((rect.bottom() + 1) * sy),
                    score=float(score),
                ),
                image.size,
            )
            for rect, score in zip(rectangles, scores, strict=True)
            if score >= min_score
        ]
        return sorted(faces, key=lambda face: face.score, reverse=True)

    def confirm(self, image: Image.Image, face: FaceBox, *, min_confidence: float) -> bool:
        """Whether the CNN detector also sees a face, of confidence ``min_confidence`` or more, where
        ``face`` was proposed.

        First in a tight region around the proposal (cheap, and enough for a clear face); a proposal HOG
        scored like a face gets a second look in a wider one, where dark, washed-out or blurred faces are
        still found. Most false proposals score low and cost only the first look.
        """
        if self._confirm_in(image, face, _TIGHT_CONFIRM, min_confidence):
            return True
        return face.score >= _SECOND_LOOK_MIN_SCORE and self._confirm_in(
            image, face, _WIDE_CONFIRM, min_confidence
        )

    def _confirm_in(
        self, image: Image.Image, face: FaceBox, view: tuple[float, float], min_confidence: float
    ) -> bool:
        region_factor, face_side = view
        cx, cy = face.centre
        side = max(face.side, 1.0)
        half = side * region_factor / 2
        region = (
            max(0.0, cx - half),
            max(0.0, cy - half),
            min(float(image.width), cx + half),
            min(float(image.height), cy + half),
        )
        scale = face_side / side
        size = (
            max(1, round((region[2] - region[0]) * scale)),
            max(1, round((region[3] - region[1]) * scale)),
        )
        pixels = np.array(image.resize(size, Image.Resampling.BILINEAR, box=region).convert("RGB"))
        with self._lock:
            self._load()
            detections = self._confirmer(pixels, 0)
        # The region may show part of a neighbouring face; only a detection centred near the
        # proposal's centre confirms it.
        near = side * scale / 2
        want_x, want_y = (cx - region[0]) * scale, (cy - region[1]) * scale
        for detection in detections:
            rect = detection.rect
            found_x, found_y = (rect.left() + rect.right() + 1) / 2, (rect.top() + rect.bottom() + 1) / 2
            close = abs(found_x - want_x) <= near and abs(found_y - want_y) <= near
            if close and detection.confidence >= min_confidence:
                return True
        return False

    def describe(self, image: Image.Image, face: FaceBox) -> FaceDescription:
        """Landmarks and the 128-D identity embedding of ``face`` (found by :meth:`detect` on ``image``)."""
        # Work on a region around the face, reduced so the face is about _DESCRIBE_FACE_SIDE px across:
        # the full photo can be 50 MP and the models gain nothing from more detail than that.
        cx, cy = face.centre
        half = face.side * 1.5
        region = (
            max(0.0, cx - half),
            max(0.0, cy - half),
            min(float(image.width), cx + half),
            min(float(image.height), cy + half),
        )
        scale = min(1.0, _DESCRIBE_FACE_SIDE / max(face.side, 1.0))
        size = (
            max(1, round((region[2] - region[0]) * scale)),
            max(1, round((region[3] - region[1]) * scale)),
        )
        crop = image.resize(size, Image.Resampling.LANCZOS, box=region)
        sx = size[0] / (region[2] - region[0])
        sy = size[1] / (region[3] - region[1])
        pixels = np.array(crop.convert("RGB"), dtype=np.uint8)
        box = dlib.rectangle(
            round((face.left - region[0]) * sx),
            round((face.top - region[1]) * sy),
            round((face.right - region[0]) * sx) - 1,
            round((face.bottom - region[1]) * sy) - 1,
        )
        with self._lock:
            self._load()
            shape = self._landmarks(pixels, box)
            chip = dlib.get_face_chip(pixels, shape, size=_CHIP_SIZE, padding=_CHIP_PADDING)
            descriptor = self._embedder.compute_face_descriptor(chip)
        # dlib's points are pixel indices of the reduced region; map each pixel's centre back.
        points = tuple(
            (region[0] + (p.x + 0.5) / sx - 0.5, region[1] + (p.y + 0.5) / sy - 0.5) for p in shape.parts()
        )
        return FaceDescription(
            landmarks=FaceLandmarks(points=points),
            embedding=tuple(float(value) for value in descriptor),
        )


def _clip_box(face: FaceBox, size: tuple[int, int]) -> FaceBox:
    # HOG boxes can reach past the border for faces cut by the frame.
    width, height = size
    return FaceBox(
        left=max(0, face.left),
        top=max(0, face.top),
        right=min(width, face.right),
        bottom=min(height, face.bottom),
        score=face.score,
    )


def embedding_distance(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Euclidean distance between two embeddings; dlib treats under 0.6 as the same person."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
