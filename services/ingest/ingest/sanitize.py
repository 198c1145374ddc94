"""The whole check for one upload: bytes in, a clean training crop or a verdict a person can act on out."""

from __future__ import annotations

import math

from PIL import Image

from ingest.crop import aligned_face_crop
from ingest.decode import DecodedImage, Decoder, decode_image
from ingest.encode import clean_png
from ingest.faces import FaceAnalyzer, FaceBox, detection_min_side
from ingest.formats import ImageFormat, sniff_format
from ingest.limits import SanitizeLimits
from ingest.phash import perceptual_hash
from ingest.quality import MIN_MEASURED_FACE_SIDE, measure_face, quality_problems
from ingest.verdicts import Accepted, Reason, ReasonCode, Rejected, RejectedInput, SanitizeResult, rejected


def sanitize(
    data: bytes, limits: SanitizeLimits, analyzer: FaceAnalyzer, decoder: Decoder | None = None
) -> SanitizeResult:
    """Check and clean one uploaded photo. Never raises for bad input: every failure is a ``Rejected``.

    ``decoder`` parses the upload: the service passes the sandbox's pool (`ingest.sandbox`), so that no
    byte of it is parsed in this process; without one, :func:`ingest.decode.decode_image` runs here (the
    tests of the pipeline itself, and development with the sandbox off). Everything after decoding works
    on plain pixels.

    A JPEG is first decoded only as large as face detection needs (DCT scaling), and decoded again at a
    larger scale only when the face found is too small in that copy for a full-quality crop. Accepted
    photos come back as a ``limits.crop_size`` square PNG made from nothing but the pixels (no metadata,
    profile or trailing bytes survive), with the face's box, scores, identity embedding and the photo's
    perceptual hash.
    """
    decode = decoder if decoder is not None else decode_image
    try:
        decoded = decode(data, limits, min_side=_first_decode_side(data, limits))
        face = _find_subject(analyzer, decoded.image, limits)
        photo_hash = perceptual_hash(decoded.image)
        decoded, face = _with_enough_pixels(data, limits, decoded, face, decode)
    except RejectedInput as rejection:
        return rejected(rejection.code, limits)

    image = decoded.image
    quality = measure_face(image, face)
    scores = {
        "face_score": round(face.score, 3),
        "face_fraction": round(face.side / min(image.size), 3),
        **quality.scores(),
    }
    problems = quality_problems(quality, limits)
    if problems:
        return Rejected(reasons=[Reason.of(code, limits) for code in problems], scores=scores)

    description = analyzer.describe(image, face)
    crop = aligned_face_crop(
        image, description.landmarks, size=limits.crop_size, face_fraction=limits.crop_face_fraction
    )
    return Accepted(
        png=clean_png(crop),
        width=crop.width,
        height=crop.height,
        face_box=_scaled(face, 1 / decoded.scale),
        face_score=face.score,
        face_fraction=face.side / min(image.size),
        embedding=description.embedding,
        perceptual_hash=photo_hash,
        source_format=decoded.source_format.value,
        source_width=decoded.source_size[0],
        source_height=decoded.source_size[1],
        scores=scores,
    )


def _first_decode_side(data: bytes, limits: SanitizeLimits) -> int | None:
    """How large to decode first. A JPEG: just what detection needs, since decoding it again larger (for a
    small face) is cheap. Other formats are decoded in full either way and only reduced after: as far as
    the smallest acceptable face keeps enough pixels for the crop, so they never need a second decode."""
    if sniff_format(data) is ImageFormat.JPEG:
        return detection_min_side(limits.min_face_fraction)
    if limits.min_face_fraction <= 0:
        return None
    return math.ceil(_wanted_face_side(limits) / limits.min_face_fraction)


def _wanted_face_side(limits: SanitizeLimits) -> float:
    """Pixels the face needs for a crop that does not enlarge it, and for the quality measures."""
    return max(limits.crop_size * limits.crop_face_fraction, MIN_MEASURED_FACE_SIDE)


def _with_enough_pixels(
    data: bytes, limits: SanitizeLimits, decoded: DecodedImage, face: FaceBox, decode: Decoder
) -> tuple[DecodedImage, FaceBox]:
    """The decoded photo and face again, at a larger scale if the face has too few pixels for the crop.

    The crop must not enlarge the face, and the quality measures need it at least a fixed size; a
    photo decoded in full already has every pixel there is.
    """
    wanted_face_side = _wanted_face_side(limits)
    if decoded.scale >= 1.0 or face.side >= wanted_face_side:
        return decoded, face
    full_face_side = face.side / decoded.scale
    scale = min(1.0, wanted_face_side / full_face_side)
    min_side = math.ceil(min(decoded.source_size) * scale) if scale < 1.0 else None
    old_scale = decoded.scale
    del decoded  # the smaller copy is not needed while the larger one is decoded
    larger = decode(data, limits, min_side=min_side)
    return larger, _scaled(face, larger.scale / old_scale)


def _scaled(face: FaceBox, factor: float) -> FaceBox:
    return FaceBox(
        left=math.floor(face.left * factor),
        top=math.floor(face.top * factor),
        right=math.ceil(face.right * factor),
        bottom=math.ceil(face.bottom * factor),
        score=face.score,
    )


def _find_subject(analyzer: FaceAnalyzer, image: Image.Image, limits: SanitizeLimits) -> FaceBox:
    """The one face this photo is about, or why there is none.

    Only faces of at least ``min_face_fraction``, and HOG-scored at least ``min_second_face_score``, count
    as a second person: bystanders far behind the subject are ignored. Each pass confirms at most
    ``max_face_proposals`` proposals, best first. The slower small-faces pass runs only when the fast one
    finds no face: it tells "too small" from "no face", and finds large enough faces the fast pass missed
    in photos under ~900 px.
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
        confirmed: list[FaceBox] = []
        for face in large:  # best score first
            # Once a face is confirmed, a weak proposal beside it is not worth a CNN look (~0.1 s each):
            # it is nearly always a patch of clothing or backdrop, and a second person shows clearly.
            if confirmed and face.score < limits.min_second_face_score:
                continue
            if is_face(face):
                confirmed.append(face)
        if len(confirmed) > 1:
            raise RejectedInput(ReasonCode.MULTIPLE_FACES, f"{len(confirmed)} faces")
        if confirmed:
            return confirmed[0]
        if small_faces and any(is_face(face) for face in small):
            raise RejectedInput(ReasonCode.FACE_TOO_SMALL)
    raise RejectedInput(ReasonCode.NO_FACE)
