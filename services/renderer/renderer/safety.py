"""The output safety gate: every output is classified for nudity and other inappropriate content before it
is stored, by the operator's pinned `ViTForImageClassification` (an NSFW/normal model).

An image is flagged for each configured label (default `nsfw`) whose probability reaches the threshold.
The quality gate's policy decides what a flag means (`enforce`: re-roll, then drop with the reason counted
on the render; `score`: record; `off`: no classifier at all). Curated styles make a flag rare; the gate is
there for what a prompt cannot rule out. Nothing here logs: scores describe a person's images.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import PIL.Image

from likeness_ml.safety_classifier import SafetyClassifier, load_safety_classifier

log = logging.getLogger(__name__)

#: Reason of an image dropped for a flag: `unsafe:<label>` (the identity gate's is `identity`).
UNSAFE_PREFIX = "unsafe:"


@dataclass(frozen=True)
class SafetyVerdict:
    """scores: probability of each watched label; flagged: those at or over the threshold."""

    scores: dict[str, float] = field(default_factory=dict)
    flagged: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return f"{UNSAFE_PREFIX}{self.flagged[0]}" if self.flagged else ""


class SafetyGate:
    """Scores images with the classifier (one lock: a worker thread at a time uses the model)."""

    def __init__(self, classifier: SafetyClassifier, flagged_labels: Sequence[str], threshold: float) -> None:
        unknown = sorted(set(flagged_labels) - set(classifier.labels))
        if unknown:
            raise ValueError(f"the safety classifier has no label {', '.join(unknown)} ({classifier.labels})")
        self.classifier = classifier
        self.watched = tuple(flagged_labels)
        self.threshold = threshold
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: Path, flagged_labels: Sequence[str], threshold: float) -> SafetyGate:
        return cls(load_safety_classifier(model_dir), flagged_labels, threshold)

    def judge(self, images: Sequence[PIL.Image.Image]) -> list[SafetyVerdict]:
        with self._lock:
            probabilities = self.classifier.probabilities(images)
        verdicts = []
        for row in probabilities:
            scores = {label: round(row[label], 4) for label in self.watched}
            flagged = tuple(label for label in self.watched if row[label] >= self.threshold)
            verdicts.append(SafetyVerdict(scores, flagged))
        return verdicts
