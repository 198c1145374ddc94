"""A 64-bit perceptual hash of a whole photo, to recognise the same picture uploaded again.

The classic DCT hash ("pHash"): the photo in greyscale, area-averaged down to 32x32, its 2-D DCT-II, and
one bit per coefficient of the 8x8 lowest frequencies telling whether it is above their median. It
ignores size, compression, colour and exposure, and moves by a few bits for small crops or turns; another
framing of the same scene moves it by 20 bits or more.

A mirror image (selfie cameras mirror) flips the sign of every coefficient of odd horizontal frequency,
so the hash of the mirrored photo comes from the same DCT for free; comparisons take the nearer of the two.
A perceptual hash describes a person's photo: it is stored only inside their encrypted face template.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

_SAMPLE_SIDE = 32
_HASH_SIDE = 8
HASH_BITS = _HASH_SIDE * _HASH_SIDE


@dataclass(frozen=True)
class PhotoHash:
    """The photo's hash and its mirror image's; ``value`` is what gets stored."""

    value: int
    mirrored: int

    def distance(self, stored: int) -> int:
        """Bits that differ between ``stored`` and the nearer of this photo and its mirror image."""
        return min(hamming(self.value, stored), hamming(self.mirrored, stored))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


@cache
def _dct_matrix() -> np.ndarray[tuple[int, int], np.dtype[np.float64]]:
    """Orthonormal DCT-II basis: row k holds cos(pi * (2i + 1) * k / 2N)."""
    k = np.arange(_SAMPLE_SIDE, dtype=np.float64)[:, None]
    i = np.arange(_SAMPLE_SIDE, dtype=np.float64)[None, :]
    basis = np.cos(math.pi * (2 * i + 1) * k / (2 * _SAMPLE_SIDE)) * math.sqrt(2 / _SAMPLE_SIDE)
    basis[0] /= math.sqrt(2)
    return basis


def _bits(coefficients: np.ndarray[tuple[int, int], np.dtype[np.float64]]) -> int:
    flags = (coefficients > np.median(coefficients)).ravel()
    return int.from_bytes(np.packbits(flags).tobytes(), "big")


def perceptual_hash(image: Image.Image) -> PhotoHash:
    """The hash of an upright photo of any size and mode."""
    # Reduced first (area averaging), then made grey: the full photo is never copied.
    grey = image.resize((_SAMPLE_SIDE, _SAMPLE_SIDE), Image.Resampling.BOX).convert("L")
    pixels = np.asarray(grey, dtype=np.float64)
    basis = _dct_matrix()
    low = (basis @ pixels @ basis.T)[:_HASH_SIDE, :_HASH_SIDE]
    # Column v holds horizontal frequency v: mirroring left-right multiplies it by (-1)^v.
    mirror_signs = np.where(np.arange(_HASH_SIDE) % 2 == 0, 1.0, -1.0)[None, :]
    return PhotoHash(value=_bits(low), mirrored=_bits(low * mirror_signs))
