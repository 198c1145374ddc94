"""Bring any decoded Pillow image to plain 8-bit sRGB RGB, the one pixel format the rest of ingest uses."""

from __future__ import annotations

import io
from functools import cache

import numpy as np
from PIL import Image, ImageCms

_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ICC_MODES = frozenset({"L", "RGB", "RGBA", "CMYK"})
_WHITE = (255, 255, 255, 255)


@cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def to_srgb_rgb(image: Image.Image) -> Image.Image:
    """A new 8-bit RGB image in sRGB: depth reduced, embedded ICC profile applied, alpha flattened on white.

    The input must already be loaded. A profile that cannot be parsed or does not fit the pixel mode is
    ignored (the pixels are then taken as sRGB, which is what browsers do too).
    """
    image = _eight_bit(image)
    image = _apply_icc_profile(image)
    if image.mode in ("RGBA", "LA"):
        image = _flatten_on_white(image)
    return image.convert("RGB")


def _eight_bit(image: Image.Image) -> Image.Image:
    """Reduce every mode to one Pillow can colour-manage and flatten: L, LA, RGB, RGBA or CMYK."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        # 16-bit greyscale (PNG) arrives as I;16 or I; Pillow's own convert("L") clips instead of scaling.
        values = np.asarray(image).astype(np.int64)
        scaled = (np.clip(values, 0, 65535) * 255 + 32767) // 65535
        return _keep_icc(image, Image.fromarray(scaled.astype(np.uint8)))
    if mode == "F":
        values = np.asarray(image)
        return _keep_icc(image, Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8)))
    if mode == "1":
        return _keep_icc(image, image.convert("L"))
    if mode == "P":
        has_alpha = "transparency" in image.info or (
            image.palette is not None and image.palette.mode == "RGBA"
        )
        return _keep_icc(image, image.convert("RGBA" if has_alpha else "RGB"))
    if mode in ("PA", "RGBa", "La"):
        return _keep_icc(image, image.convert("RGBA" if mode != "La" else "LA"))
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return image
    # YCbCr, LAB, HSV, RGBX and the like: Pillow knows how to reach RGB; no usable ICC for these here.
    return image.convert("RGB")


def _keep_icc(source: Image.Image, converted: Image.Image) -> Image.Image:
    icc = source.info.get("icc_profile")
    if icc:
        converted.info["icc_profile"] = icc
    return converted


def _apply_icc_profile(image: Image.Image) -> Image.Image:
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in _ICC_MODES:
        return image
    output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
    try:
        source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(
            image,
            source_profile,
            _srgb_profile(),
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            outputMode=output_mode,
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image
    if converted is None:  # only when inPlace=True, which we never ask for
        return image
    return converted


def _flatten_on_white(image: Image.Image) -> Image.Image:
    alpha = image.getextrema()[-1]
    if alpha == (255, 255):  # opaque (WebP and PNG often carry an alpha channel they do not use)
        return image.convert("RGB")
    # Pasting through the alpha channel as a mask: one RGB copy, not three RGBA ones.
    flattened = Image.new("RGB", image.size, _WHITE[:3])
    flattened.paste(image.convert("RGB"), (0, 0), image.getchannel("A"))
    return flattened
