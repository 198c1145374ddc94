"""Marks every output as AI-generated, three ways, from the most to the least durable:

1. an invisible watermark in the pixels (``likeness_marks.watermark``), which survives a JPEG re-encode;
2. IPTC DigitalSourceType ``trainedAlgorithmicMedia`` in the image's XMP metadata;
3. a signed C2PA manifest saying the same (``renderer.provenance``), when a signer is configured.

The image is encoded from the generated pixels alone; the only metadata it carries is these statements.
"""

from __future__ import annotations

from typing import Protocol

import PIL.Image

from likeness_marks import watermark
from likeness_marks.iptc import encode_marked_png


class PngSigner(Protocol):
    def sign_png(self, png: bytes) -> bytes: ...


class OutputMarker:
    """Turns a generated image into the bytes we store: watermarked pixels, IPTC XMP, C2PA manifest."""

    content_type = "image/png"

    def __init__(self, watermark_key: str, signer: PngSigner | None) -> None:
        self.watermark_key = watermark_key
        self.signer = signer

    def mark(self, image: PIL.Image.Image) -> bytes:
        png = encode_marked_png(watermark.embed(image, self.watermark_key))
        # The manifest is signed last: it hashes the file's bytes, metadata included.
        return self.signer.sign_png(png) if self.signer is not None else png
