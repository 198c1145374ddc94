"""Marks every output as AI-generated, three ways, from the most to the least durable:

1. an invisible watermark in the pixels (``renderer.watermark``), which survives a JPEG re-encode;
2. IPTC DigitalSourceType ``trainedAlgorithmicMedia`` in the image's XMP metadata;
3. a signed C2PA manifest saying the same (``renderer.provenance``), when a signer is configured.

The image is encoded from the generated pixels alone; the only metadata it carries is these statements.
"""

from __future__ import annotations

import io
from typing import Protocol

import PIL.Image
from PIL.PngImagePlugin import PngInfo

from renderer import watermark

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
XMP = f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">
   <Iptc4xmpExt:DigitalSourceType>{DIGITAL_SOURCE_TYPE}</Iptc4xmpExt:DigitalSourceType>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


class PngSigner(Protocol):
    def sign_png(self, png: bytes) -> bytes: ...


def encode_marked_png(image: PIL.Image.Image) -> bytes:
    """PNG of image's pixels with the IPTC statement (no watermark, no manifest: see OutputMarker)."""
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP)
    info.add_text("Software", "Likeness (AI-generated headshot)")
    out = io.BytesIO()
    image.convert("RGB").save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def is_marked(data: bytes) -> bool:
    """Whether an image's XMP states IPTC DigitalSourceType trainedAlgorithmicMedia (PNG or JPEG)."""
    with PIL.Image.open(io.BytesIO(data)) as image:
        xmp = image.info.get("XML:com.adobe.xmp") or image.info.get("xmp") or ""
    text = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp)
    return DIGITAL_SOURCE_TYPE in text


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
