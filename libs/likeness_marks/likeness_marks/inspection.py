"""What marks one image carries: the watermark (with its score), the IPTC statement and a C2PA manifest."""

from __future__ import annotations

import io
from typing import Any

import PIL.Image

from likeness_marks import watermark
from likeness_marks.c2pa_reading import c2pa_available, read_manifest
from likeness_marks.iptc import is_marked


def inspect_image(data: bytes, key: str, trust_anchors_pem: str = "") -> dict[str, Any]:
    """What marks one image carries (raises ValueError when it is not an image)."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            image_format = str(image.format or "")
            pixels = image.convert("RGB")
    except (OSError, PIL.Image.DecompressionBombError) as error:
        raise ValueError(f"not a readable image ({error})") from None
    detection = watermark.detect(pixels, key)
    manifest = read_manifest(data, image_format, trust_anchors_pem)
    return {
        "format": image_format,
        "watermark": detection.marked,
        "watermark_score": round(detection.score, 2),
        "iptc_trained_algorithmic_media": is_marked(data),
        "c2pa": None
        if manifest is None
        else {
            "validation_state": manifest.validation_state,
            "ai_generated": manifest.says_ai_generated,
            "signer": manifest.signer,
            "failures": list(manifest.failures),
        },
        "c2pa_checked": c2pa_available(),
    }
