"""Checks of a new photo against the subject's accepted ones: the same picture again, or someone else.

Pure functions over decrypted templates; the service loads the templates and holds the subject's lock.
Only the verdict leaves this module: the distances themselves are never put in a verdict, a log or a
metric, since an identity distance a caller could read back would make every upload a face-matching
query against the subject.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ingest.limits import SubjectRules
from ingest.phash import PhotoHash
from ingest.templates import FaceTemplate
from ingest.verdicts import ReasonCode


def consensus(templates: Sequence[FaceTemplate]) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
    """The element-wise median of the embeddings: one odd photo that slipped in does not move it far."""
    return np.asarray(np.median(np.stack([t.as_array() for t in templates]), axis=0), dtype=np.float64)


def subject_problem(
    embedding: Sequence[float],
    photo_hash: PhotoHash,
    accepted: Sequence[FaceTemplate],
    rules: SubjectRules,
) -> ReasonCode | None:
    """Why this photo cannot join the subject's ``accepted`` photos, or None when it can."""
    if len(accepted) >= rules.max_photos:
        return ReasonCode.TOO_MANY_PHOTOS
    for template in accepted:
        stored = template.perceptual_hash
        if stored is not None and photo_hash.distance(stored) <= rules.max_duplicate_distance:
            return ReasonCode.DUPLICATE
    if accepted:
        distance = float(np.linalg.norm(np.asarray(embedding, dtype=np.float64) - consensus(accepted)))
        if distance > rules.max_identity_distance:
            return ReasonCode.DIFFERENT_PERSON
    return None
