"""The whole check for one upload: bytes in, a clean training crop or a verdict a person can act on out."""

from __future__ import annotations

from PIL import Image

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
        face = _find_subject(analyzer, image, limits)
    except RejectedInput as rejection:
        return rejected(rejection.code, limits)

    description = analyzer.describe(image, face)
    crop = aligned_face_crop(
        image, description.landmarks, size=limits.crop_size, face_fraction=limits.crop_face_fraction
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


def _find_subject(analyzer: FaceAnalyzer, image: Image.Image, limits: SanitizeLimits) -> FaceBox:
    """The one face this photo is about, or why there is none.

    Only faces of at least ``min_face_fraction`` count as a second person: bystanders far behind the
    subject are ignored. Each pass confirms at most ``max_face_proposals`` proposals, large ones first.
    The slower small-faces pass runs only when the fast one finds no face: it tells "too small" from
    "no face", and finds large enough faces the fast pass missed in photos under ~900 px.
    """
    shorter_side = min(image.size)

    def is_face(face: FaceBox) -> bool:
        return analyzer.confirm(image, face, min_confidence=limits.min_face_confidence)

    for small_faces in (False, True):
        proposals = analyzer.detect(
            image,
            min_face_fraction=limits.min_face_fraction,
            min_score=limits.min_proposal_score,
            max_pixels=limits.detection_max_pixels,
            small_faces=small_faces,
        )
        large = [face for face in proposals if face.side / shorter_side >= limits.min_face_fraction]
        large = large[: limits.max_face_proposals]
        small = [face for face in proposals if face.side / shorter_side < limits.min_face_fraction]
        small = small[: limits.max_face_proposals - len(large)]
        confirmed = [face for face in large if is_face(face)]
        if len(confirmed) > 1:
            raise RejectedInput(ReasonCode.MULTIPLE_FACES, f"{len(confirmed)} faces")
        if confirmed:
            return confirmed[0]
        if small_faces and any(is_face(face) for face in small):
            raise RejectedInput(ReasonCode.FACE_TOO_SMALL)
    raise RejectedInput(ReasonCode.NO_FACE)
