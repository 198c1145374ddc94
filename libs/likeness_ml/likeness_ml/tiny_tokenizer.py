"""An offline CLIP BPE vocabulary for the tiny test pipeline.

The real CLIP vocabulary cannot be downloaded here, so we build a byte-level one the same way CLIP's is
laid out: the 256 byte symbols, the same with the end-of-word marker ``</w>``, the merges learned from a
small fixed corpus of headshot-prompt words, then the two special tokens. Every byte sequence stays
encodable (byte fallback), and the corpus words become single tokens so prompts stay short. The output
depends only on the code, never on the machine or the process, so the files are byte-identical everywhere.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass
from functools import cache

END_OF_WORD = "</w>"
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
MODEL_MAX_LENGTH = 77

# Words that appear in our instance prompt and style catalog (and common photo words). Order does not
# matter: merges are learned by frequency with a deterministic tie-break.
_CORPUS = """
a an the of in on with and for at to by from as is this that his her their person man woman people
photo photograph portrait headshot headshots picture image shot closeup close up upper body half
professional corporate executive business office linkedin resume realtor real estate startup casual
creative studio modern classic clean sharp detailed natural soft warm cool bright dark light lighting
lit window daylight golden hour rim key fill softbox three point rembrandt butterfly cinematic
background backdrop gray grey white black blue neutral gradient blurred bokeh city skyline loft
brick wall plants cafe home interior exterior street outdoor indoor colorful pastel textured solid
suit jacket blazer shirt blouse tie collar sweater hoodie tshirt t dress button down smart attire
wearing navy charcoal beige confident friendly approachable smiling smile relaxed serious trustworthy
looking camera facing front three quarter view centered framed framing shoulders chest head crop
eye level focus depth field f lens mm canon nikon sony high quality resolution k hd uhd realistic
photorealistic skin texture pores film grain color graded editorial magazine vogue
ugly deformed blurry lowres low bad anatomy extra fingers hands limbs missing watermark text logo
signature cropped out frame jpeg artifacts noisy oversaturated cartoon painting drawing illustration
render cgi 3d plastic doll disfigured mutated duplicate cross eyed asymmetric distorted
agent art calm collared colored composed crew crisp even expression eyes fine flat gentle genuine harsh
large neck over painted passport photography plain shadows simple slight softly style stylish subtle
tailored turn without
ohwx sks person
"""

# Enough merges for every corpus word to become one token (the corpus needs ~680).
_MERGE_COUNT = 1000


@dataclass(frozen=True)
class TinyVocabulary:
    """A complete CLIP BPE vocabulary: token -> id, and the merges in rank order."""

    vocab: dict[str, int]
    merges: list[tuple[str, str]]

    def vocab_json(self) -> str:
        return json.dumps(self.vocab, ensure_ascii=False, indent=2) + "\n"

    def merges_txt(self) -> str:
        # The "#version" header is what CLIP's own merges.txt starts with; loaders skip it.
        return "#version: 0.2\n" + "".join(f"{left} {right}\n" for left, right in self.merges)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable char map, so BPE never sees whitespace/control bytes."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codepoints = printable[:]
    shifted = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codepoints.append(256 + shifted)
            shifted += 1
    return {byte: chr(point) for byte, point in zip(printable, codepoints, strict=True)}


def _learn_merges(words: list[str], symbols: dict[int, str], limit: int) -> list[tuple[str, str]]:
    """Classic BPE training: repeatedly merge the most frequent adjacent pair (ties: smallest pair)."""
    frequencies = Counter(words)
    # Each word as a tuple of byte symbols, the last one carrying the end-of-word marker.
    spelled: dict[tuple[str, ...], int] = {}
    for word, count in sorted(frequencies.items()):
        chars = [symbols[b] for b in word.encode("utf-8")]
        chars[-1] += END_OF_WORD
        spelled[tuple(chars)] = count
    merges: list[tuple[str, str]] = []
    while len(merges) < limit:
        pairs: Counter[tuple[str, str]] = Counter()
        for pieces, count in spelled.items():
            for left, right in itertools.pairwise(pieces):
                pairs[(left, right)] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        spelled = {_merge_pair(pieces, best): count for pieces, count in spelled.items()}
    return merges


def _merge_pair(pieces: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    merged: list[str] = []
    index = 0
    while index < len(pieces):
        if index + 1 < len(pieces) and (pieces[index], pieces[index + 1]) == pair:
            merged.append(pieces[index] + pieces[index + 1])
            index += 2
        else:
            merged.append(pieces[index])
            index += 1
    return tuple(merged)


@cache
def tiny_vocabulary() -> TinyVocabulary:
    symbols = bytes_to_unicode()
    base = list(symbols.values())
    tokens = [*base, *(symbol + END_OF_WORD for symbol in base)]
    merges = _learn_merges(_CORPUS.split(), symbols, _MERGE_COUNT)
    tokens.extend(left + right for left, right in merges)
    tokens.extend([START_OF_TEXT, END_OF_TEXT])
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return TinyVocabulary(vocab=vocab, merges=merges)
