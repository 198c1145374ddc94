"""The training crop: square, eyes level, face centred with head-and-shoulders framing."""

from __future__ import annotations

import math

from PIL import Image

from ingest.faces import FaceLandmarks

# Where the face centre sits, as a share of the crop's height from the top. Below the middle leaves
# space for the hair above and the shoulders below.
_FACE_CENTRE_FROM_TOP = 0.47
# Face size (about brow to chin, as wide as dlib's detector boxes) from landmark distances, and how far
# the eyes sit above the face's centre; measured on dlib's 5-point landmarks of frontal faces.
_FACE_PER_EYE_DISTANCE = 2.2
_FACE_PER_EYES_TO_NOSE = 3.0
_EYES_ABOVE_FACE_CENTRE = 0.2
# Pixels kept clear of the photo's border so the resampling filter never reads outside it.
_BORDER_GUARD = 1.0
_WHITE = (255, 255, 255)


def aligned_face_crop(
    image: Image.Image,
    landmarks: FaceLandmarks,
    *,
    size: int,
    face_fraction: float,
) -> Image.Image:
    """A square RGB crop of ``size`` px with the eyes level and the face ``face_fraction`` of its side.

    Position, scale and angle come from the landmarks only: detector boxes of one face jump by 15 % in
    size between similar photos, the eye and nose points do not. Near the photo's border the crop
    window is moved (and, if the photo is too small for it, shrunk) rather than padded, so the crop never
    contains invented pixels; the face is then off-centre or larger.
    """
    # Landmarks are pixel indices (centre of pixel i at i); Pillow's transforms use continuous
    # coordinates (pixel i spans [i, i + 1]).
    left_eye_x, left_eye_y = (v + 0.5 for v in landmarks.eye_on_image_left)
    right_eye_x, right_eye_y = (v + 0.5 for v in landmarks.eye_on_image_right)
    nose_x, nose_y = (v + 0.5 for v in landmarks.nose)
    angle = math.atan2(right_eye_y - left_eye_y, right_eye_x - left_eye_x)
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    # The crop's own "down" direction in the photo is (-sin, cos).

    eyes_x, eyes_y = (left_eye_x + right_eye_x) / 2, (left_eye_y + right_eye_y) / 2
    eye_distance = math.hypot(right_eye_x - left_eye_x, right_eye_y - left_eye_y)
    eyes_to_nose = math.hypot(nose_x - eyes_x, nose_y - eyes_y)
    # Turning the head shortens the eye distance, tilting it the eyes-to-nose one; the larger estimate
    # is the one the pose did not shrink.
    face_size = max(_FACE_PER_EYE_DISTANCE * eye_distance, _FACE_PER_EYES_TO_NOSE * eyes_to_nose, 1.0)

    # An axis-aligned box that contains the crop square turned by ``angle`` has this many times its side.
    extent = abs(cos_a) + abs(sin_a)
    side = face_size / face_fraction
    side = min(side, (min(image.size) - 2 * _BORDER_GUARD) / extent)
    # From the eyes down to the face centre, then on down to the crop centre.
    drop = _EYES_ABOVE_FACE_CENTRE * face_size + (0.5 - _FACE_CENTRE_FROM_TOP) * side
    centre_x = eyes_x - sin_a * drop
    centre_y = eyes_y + cos_a * drop
    half_extent = side * extent / 2
    margin = half_extent + _BORDER_GUARD
    centre_x = min(max(centre_x, margin), image.width - margin)
    centre_y = min(max(centre_y, margin), image.height - margin)

    source = image
    scale = side / size  # source pixels per output pixel
    if scale > 1.0:
        # Shrinking: reduce the region with an antialiasing filter first, then rotate at output scale;
        # rotating with bicubic alone would alias at large reductions.
        region = (
            centre_x - half_extent,
            centre_y - half_extent,
            centre_x + half_extent,
            centre_y + half_extent,
        )
        reduced_side = max(1, math.ceil(2 * half_extent / scale))
        source = image.resize((reduced_side, reduced_side), Image.Resampling.LANCZOS, box=region)
        factor = reduced_side / (2 * half_extent)
        centre_x = centre_y = reduced_side / 2
        scale = side * factor / size

    # Output pixel (u, v) reads the source at centre + scale * R(angle) @ ((u, v) - size / 2).
    half = size / 2
    coefficients = (
        scale * cos_a,
        -scale * sin_a,
        centre_x - scale * half * (cos_a - sin_a),
        scale * sin_a,
        scale * cos_a,
        centre_y - scale * half * (sin_a + cos_a),
    )
    return source.transform(
        (size, size),
        Image.Transform.AFFINE,
        coefficients,
        resample=Image.Resampling.BICUBIC,
        fillcolor=_WHITE,
    )
