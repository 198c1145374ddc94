"""A photo made fit to leave the caller's machine: upright, sRGB, no metadata, no bigger than ingest needs.

Before an upload the client decodes each photo, applies its EXIF orientation, converts its embedded ICC
profile to sRGB, caps the long side at `MAX_LONG_SIDE` and re-encodes the pixels alone as a high-quality
JPEG. Nothing of the original file crosses the network: no GPS position, camera or owner (EXIF, XMP,
IPTC), no comment, no embedded thumbnail (which may show what a photo looked like before an edit), no
trailing bytes. Ingest still sanitizes everything it receives; this is minimization at the source, so
that for callers of this client (and the CLI) location data is never sent at all.

Why 3072 px: ingest accepts a face down to 10 % of the photo's shorter side, and writes a 512 px training
crop in which the face box takes 45 % (230 px). For the smallest accepted face to still fill that box
without being enlarged, the shorter side needs 2304 px, which is a 3072 px long side for a 4:3 photo
(what phones take). Face detection itself needs far less (ingest searches a copy of at most 2 MP), so the
cap costs neither the verdict nor the crop's quality, while a 12-50 MP original shrinks to at most 9.4 MP.
Photos already smaller are never enlarged.

Only the formats ingest accepts (JPEG, PNG, WebP, HEIC) are prepared; anything else (a TIFF, a GIF, an
animation, a file that is no image) is refused here with `PhotoNotPrepared`, so it is never sent: ingest
would refuse it anyway. Pillow is the client's optional `photos` extra (`pip install
'likeness-client[photos]'`, with pillow-heif for HEIC); without it, an upload that asks for preparation
says so rather than sending originals. Callers who must send originals pass `prepare=False`.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

#: The long side a prepared photo is capped at (see the module's docstring for why).
MAX_LONG_SIDE = 3072
#: JPEG quality of the re-encode: high, with full-resolution colour (4:4:4), so no detail the face
#: checks measure (sharpness, exposure) is lost to the client's encoder.
JPEG_QUALITY = 95
#: Largest decoded image the client agrees to open (a decompression bomb is refused, not decoded).
MAX_PIXELS = 100_000_000
#: What ingest accepts, by the file's leading bytes (its own check is the same; names do not count).
_SIGNATURES = {
    "JPEG": (b"\xff\xd8\xff",),
    "PNG": (b"\x89PNG\r\n\x1a\n",),
}
#: HEVC-coded HEIF brands (what phones write as .heic); a generic brand counts only with one of these among
#: its compatible brands, as in ingest (an AVIF, same container, another codec, is not accepted there).
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_GENERIC_HEIF_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})
_WHITE = (255, 255, 255)


class PhotoNotPrepared(ValueError):
    """A photo the client will not send: it is not a photo ingest accepts, or it cannot be decoded here.

    `name` is the photo's file name; the message says what is wrong and what to do.
    """

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True)
class PreparedPhoto:
    """The bytes to send (a JPEG of pixels only) and the name to send them under."""

    name: str
    data: bytes
    content_type: str = "image/jpeg"


def prepare_photo(name: str, data: bytes, max_long_side: int = MAX_LONG_SIDE) -> PreparedPhoto:
    """The photo upright, in sRGB, at most `max_long_side` px long, re-encoded from its pixels alone.

    Raises `PhotoNotPrepared` for anything that is not a still JPEG, PNG, WebP or HEIC photo that decodes.
    """
    if max_long_side <= 0:
        raise ValueError("max_long_side must be positive")
    image_format = _sniff(data)
    if image_format is None:
        raise PhotoNotPrepared(name, "not a JPEG, PNG, WebP or HEIC photo; it was not sent")
    pil = _pillow(name, image_format)
    try:
        with pil.Image.open(io.BytesIO(data), formats=[image_format]) as opened:
            if getattr(opened, "is_animated", False):
                raise PhotoNotPrepared(name, "an animation, not a photo; it was not sent")
            if opened.width * opened.height > MAX_PIXELS:
                raise PhotoNotPrepared(name, f"larger than {MAX_PIXELS} pixels; it was not sent")
            if image_format == "JPEG":
                # Decode straight at the size needed (DCT scaling keeps at least the size asked for).
                opened.draft("RGB", (max_long_side, max_long_side))
            opened.load()
            pixels = _to_srgb(pil, opened)
            orientation = opened.getexif().get(0x0112, 1)
    except PhotoNotPrepared:
        raise
    except (OSError, ValueError, SyntaxError, pil.Image.DecompressionBombError) as exc:
        raise PhotoNotPrepared(name, f"could not be decoded here ({type(exc).__name__}); not sent") from None
    upright = _apply_orientation(pil, pixels, orientation)
    if max(upright.size) > max_long_side:
        upright.thumbnail((max_long_side, max_long_side), pil.Image.Resampling.LANCZOS, reducing_gap=3.0)
    # A fresh image from the raw pixels: nothing of the original's `info` (EXIF, ICC, XMP, comment) can
    # ride along into the encoder.
    clean = pil.Image.frombytes(upright.mode, upright.size, upright.tobytes())
    buffer = io.BytesIO()
    clean.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return PreparedPhoto(_jpeg_name(name), buffer.getvalue())


def _sniff(data: bytes) -> str | None:
    for image_format, signatures in _SIGNATURES.items():
        if data.startswith(signatures):
            return image_format
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if _is_heic(data):
        return "HEIF"
    return None


def _is_heic(data: bytes) -> bool:
    # An "ftyp" box first: size, "ftyp", major brand, minor version, then compatible brands to its size.
    if len(data) < 16 or data[4:8] != b"ftyp":
        return False
    box_size = int.from_bytes(data[:4], "big")
    if box_size < 16 or box_size > min(len(data), 4096):
        return False
    major = data[8:12]
    compatible = {data[i : i + 4] for i in range(16, box_size - 3, 4)}
    return major in _HEIC_BRANDS or (major in _GENERIC_HEIF_BRANDS and bool(compatible & _HEIC_BRANDS))


def _pillow(name: str, image_format: str) -> Any:
    """The PIL package (and the HEIC plugin when the photo needs it), or a clear error without them."""
    try:
        import PIL.Image
        import PIL.ImageCms
    except ImportError:
        raise PhotoNotPrepared(
            name,
            "preparing photos needs Pillow: pip install 'likeness-client[photos]' "
            "(or pass prepare=False to send originals)",
        ) from None
    if image_format == "HEIF":
        try:
            import pillow_heif
        except ImportError:
            raise PhotoNotPrepared(
                name, "a HEIC photo needs pillow-heif: pip install 'likeness-client[photos]'"
            ) from None
        pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    return PIL


def _to_srgb(pil: Any, image: Image.Image) -> Image.Image:
    """8-bit RGB in sRGB: the embedded ICC profile applied (an unusable one is ignored, as ingest does),
    transparency flattened on white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = pil.Image.new("RGB", rgba.size, _WHITE)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        flat.info["icc_profile"] = image.info.get("icc_profile")
        image = flat
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "L", "CMYK"):
        try:
            source = pil.ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = pil.ImageCms.createProfile("sRGB")
            converted = pil.ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
        except (pil.ImageCms.PyCMSError, OSError, ValueError):
            converted = None
        if converted is not None:
            return converted  # type: ignore[no-any-return]
    return image if image.mode == "RGB" else image.convert("RGB")


#: EXIF orientation -> the transposition that makes the stored pixels upright.
_UPRIGHT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270"}
_UPRIGHT |= {7: "TRANSVERSE", 8: "ROTATE_90"}


def _apply_orientation(pil: Any, image: Image.Image, orientation: object) -> Image.Image:
    method = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return image if method is None else image.transpose(getattr(pil.Image.Transpose, method))


def _jpeg_name(name: str) -> str:
    stem, _ = os.path.splitext(name)
    return (stem or "photo") + ".jpg"
