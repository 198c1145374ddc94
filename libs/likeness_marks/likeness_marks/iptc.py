"""IPTC DigitalSourceType `trainedAlgorithmicMedia` in an image's XMP: written into PNGs, read from PNG
and JPEG."""

from __future__ import annotations

import io

import PIL.Image
from PIL.PngImagePlugin import PngInfo

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


def encode_marked_png(image: PIL.Image.Image) -> bytes:
    """PNG of image's pixels with the IPTC statement (no watermark, no manifest: the renderer adds those)."""
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
