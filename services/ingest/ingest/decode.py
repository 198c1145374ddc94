"""Untrusted bytes to an upright 8-bit sRGB image, with every size check done before pixels are decoded."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Protocol

from PIL import ExifTags, Image

from ingest.formats import ImageFormat, open_image, sniff_format
from ingest.limits import SanitizeLimits
from ingest.reasons import ReasonCode, RejectedInput
from ingest.srgb import to_srgb_rgb

# Formats where several frames mean an animation. A JPEG with extra frames is an MPO (phones store depth
# and HDR gain maps that way) and a HEIF may hold several images; for both we use the primary image.
_ANIMATABLE = frozenset({ImageFormat.PNG, ImageFormat.WEBP})


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image
    """Upright (EXIF orientation applied), 8-bit RGB sRGB, in a fresh buffer with an empty ``info``."""
    source_format: ImageFormat
    source_size: tuple[int, int]
    """The upright photo's full size; ``image`` is smaller when it was decoded at a reduced scale."""

    @property
    def scale(self) -> float:
        """Pixels of ``image`` per pixel of the full-size photo (1, or 1/2 to 1/8 for a reduced JPEG)."""
        return self.image.width / self.source_size[0]


class Decoder(Protocol):
    """Anything that decodes an upload as :func:`decode_image` does: the function itself (in this process,
    for development and the tests of decoding) or the sandbox's pool (`ingest.sandbox`), which runs it in a
    locked-down worker process."""

    def __call__(
        self, data: bytes, limits: SanitizeLimits, *, min_side: int | None = None
    ) -> DecodedImage: ...


def decode_image(data: bytes, limits: SanitizeLimits, *, min_side: int | None = None) -> DecodedImage:
    """Decode an upload, or raise :class:`RejectedInput` saying why it cannot be used.

    Order matters: bytes are counted before parsing, the format is sniffed before a decoder is chosen,
    and the declared pixel count is checked from the header before ``load()`` allocates the pixels.

    With ``min_side``, the image comes back reduced as far as a shorter side of at least ``min_side``
    allows. A JPEG is decoded straight at the smallest of libjpeg's DCT scales (1/8, 1/4, 1/2, 1) that
    does: the decoder skips the finer coefficients, a fraction of the time and memory of a full decode.
    Other formats can only be decoded in full; they are reduced by an integer factor (area averaging)
    right after, before any conversion copies them, and the full-size pixels are let go at once.
    """
    if len(data) > limits.max_bytes:
        raise RejectedInput(ReasonCode.FILE_TOO_LARGE)
    image_format = sniff_format(data)
    if image_format is None:
        raise RejectedInput(ReasonCode.UNSUPPORTED_FORMAT, "magic bytes not in the allow-list")

    image = _open_header(data, image_format)
    try:
        with image:
            _check_header(image, image_format, limits)
            width, height = image.size  # as the header declares them, before any reduction
            if min_side is not None and image_format is ImageFormat.JPEG:
                _reduce_while_decoding(image, min_side)
            image.load()
            # Only after load(): for PNG, reading the EXIF block loads the image, and a failure in that
            # load would be hidden behind "no orientation".
            orientation = _orientation(image)
            source_size = (height, width) if orientation in _SWAPS_SIDES else (width, height)
            reduced = _reduce_after_decoding(image, min_side) if min_side is not None else image
            if reduced is not image:
                image.close()  # frees the full-size pixels now rather than when the block ends
            rgb = to_srgb_rgb(_upright(reduced, orientation))
    except RejectedInput:
        raise
    except Exception as error:
        # Truncated data, bad checksums, broken codecs: Pillow and its plugins raise many types here
        # (OSError, SyntaxError, ValueError, EOFError, struct.error, MemoryError...).
        raise RejectedInput(ReasonCode.CORRUPT_IMAGE, type(error).__name__) from None
    # to_srgb_rgb always returns a new, loaded image, detached from the file; Pillow copies ``info``
    # (EXIF, ICC, XMP, comments) along through conversions, so drop it here. The encoder later copies
    # the pixels into a fresh buffer as well; this just keeps metadata from travelling at all.
    rgb.info.clear()
    return DecodedImage(image=rgb, source_format=image_format, source_size=source_size)


# Modes Image.reduce() handles; others (palette, 16-bit) are rare and small enough to convert in full.
_REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "CMYK", "I", "F"})


def _reduce_after_decoding(image: Image.Image, min_side: int) -> Image.Image:
    factor = min(image.size) // min_side
    if factor < 2 or image.mode not in _REDUCIBLE_MODES:
        return image
    return image.reduce(factor)


def _reduce_while_decoding(image: Image.Image, min_side: int) -> None:
    width, height = image.size
    scale = min_side / min(width, height)
    if scale < 1.0:
        # draft() picks the largest reduction that keeps the image at least this size.
        image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))


def _open_header(data: bytes, image_format: ImageFormat) -> Image.Image:
    # Pillow warns (or errors, past twice its MAX_IMAGE_PIXELS) when a header declares a huge image;
    # the warning is made an error so such a file stops here. Our own, lower max_pixels check follows
    # in _check_header and does not depend on this (catch_warnings is process-global state).
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return open_image(data, image_format)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise RejectedInput(ReasonCode.IMAGE_TOO_LARGE, "decompression bomb guard") from None
        except Exception as error:
            raise RejectedInput(ReasonCode.CORRUPT_IMAGE, type(error).__name__) from None


def _check_header(image: Image.Image, image_format: ImageFormat, limits: SanitizeLimits) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise RejectedInput(ReasonCode.CORRUPT_IMAGE, "empty dimensions")
    if width * height > limits.max_pixels:
        raise RejectedInput(ReasonCode.IMAGE_TOO_LARGE, f"{width}x{height}")
    if min(width, height) < limits.min_side:
        raise RejectedInput(ReasonCode.IMAGE_TOO_SMALL, f"{width}x{height}")
    if image_format in _ANIMATABLE and getattr(image, "n_frames", 1) > 1:
        raise RejectedInput(ReasonCode.UNSUPPORTED_FORMAT, "animated image")


# What ImageOps.exif_transpose does, without its copy of the whole image when there is nothing to turn.
_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


_SWAPS_SIDES = frozenset({5, 6, 7, 8})


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8); an EXIF block too broken to read is treated as 'no rotation'.

    (pillow-heif applies HEIF's own rotation while decoding and resets the EXIF tag, so HEIC is not
    turned twice.)
    """
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a malformed EXIF block must not make a readable photo unusable
        return 1
    return orientation if isinstance(orientation, int) and orientation in _TRANSPOSE_FOR_ORIENTATION else 1


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE_FOR_ORIENTATION.get(orientation)
    return image.transpose(method) if method is not None else image
