"""Why an upload cannot be used: the stable reason codes, and the exception the pipeline raises with one.

Apart from `ingest.verdicts` (which re-exports both) so that the decoding sandbox's worker, which imports
`ingest.decode`, loads no more than the decoders: no dlib, no face models.
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    """Stable machine codes; clients switch on these, so never rename one."""

    FILE_TOO_LARGE = "file_too_large"
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT_IMAGE = "corrupt_image"
    IMAGE_TOO_LARGE = "image_too_large"
    IMAGE_TOO_SMALL = "image_too_small"
    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    FACE_TOO_SMALL = "face_too_small"
    TOO_BLURRY = "too_blurry"
    TOO_DARK = "too_dark"
    OVEREXPOSED = "overexposed"
    # Checked by the service against the subject's other photos (see ingest.subject_checks).
    TOO_MANY_PHOTOS = "too_many_photos"
    DUPLICATE = "duplicate"
    DIFFERENT_PERSON = "different_person"


class RejectedInput(Exception):
    """Raised inside the pipeline when the input is unusable; sanitize() turns it into a Rejected verdict.

    The detail is for developers (tests, debugging) and never contains image content.
    """

    def __init__(self, code: ReasonCode, detail: str = "") -> None:
        super().__init__(f"{code.value}: {detail}" if detail else code.value)
        self.code = code
        self.detail = detail
