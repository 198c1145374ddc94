"""The whole check for one upload: bytes in, a clean training crop or a verdict a person can act on out."""

from __future__ import annotations

from ingest.crop import aligned_face_crop
from ingest.decode import decode_image
from ingest.encode import clean_png
from ingest.faces import FaceAnalyzer, FaceBox
from ingest.limits import SanitizeLimits
from ingest.verdicts import Accepted, ReasonCode, RejectedInput, SanitizeResult, rejected


def sanitize(data: bytes, limits: SanitizeLimits, analyzer: FaceAnalyzer) -> SanitizeResult:
    """Check and clean one uploaded photo. Never raises for bad input: every failure is a ``Rejected``.

    Accepted photos come back as a ``limits.crop_size`` square PNG decoded from nothing but the pixels
    (no metadata, profile or trailing bytes survive), with the face's box, scores and identity embedding.
    """
    try:
        decoded = decode_image(data, limits)
        image = decoded.image
        face = _the_one_face(
            analyzer.detect(image, max_side=limits.detection_max_side, min_score=limits.min_face_score),
            image.size,
            limits,
        )
    except RejectedInput as rejection:
        return rejected(rejection.code, limits)

    description = analyzer.describe(image, face)
    crop = aligned_face_crop(
        image, face, description.landmarks, size=limits.crop_size, face_fraction=limits.crop_face_fraction
    )
    return Accepted(
        png=clean_png(crop),
        width=crop.width,
        height=crop.height,
        face_box=face,
        face_score=face.score,
        face_fraction=face.side / min(image.size),
        embedding=description.embedding,
        source_format=decoded.source_format.value,
        source_width=image.width,
        source_height=image.height,
    )


def _the_one_face(faces: list[FaceBox], size: tuple[int, int], limits: SanitizeLimits) -> FaceBox:
    """The subject's face, or why there is none.

    Faces smaller than ``min_face_fraction`` do not count as a second person (bystanders far behind);
    if only such faces exist, the subject is too far away.
    """
    if not faces:
        raise RejectedInput(ReasonCode.NO_FACE)
    shorter_side = min(size)
    large_enough = [face for face in faces if face.side / shorter_side >= limits.min_face_fraction]
    if len(large_enough) > 1:
        raise RejectedInput(ReasonCode.MULTIPLE_FACES, f"{len(large_enough)} faces")
    if not large_enough:
        raise RejectedInput(ReasonCode.FACE_TOO_SMALL)
    return large_enough[0]
