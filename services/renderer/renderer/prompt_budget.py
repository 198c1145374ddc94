"""Every composed prompt must fit CLIP's 77-token window (75 after its start and end tokens): the text
encoders of both families silently cut the rest, so a long catalog choice would drop the style's closing
words (or the choice itself) without an error. Checked for each style with the longest choice of each kind.

The catalog is checked on load with an estimate (no tokenizer needed: the `serve` role and unit tests have
none); a worker checks again with its model's own tokenizer at start, exactly, when that tokenizer carries
CLIP's full vocabulary (the tiny test models' byte-level one would overcount words it never learned).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from renderer.catalog import Catalog, Choices
from renderer.styles import Style

#: CLIP's window less its start and end tokens.
PROMPT_TOKENS = 75
#: The subject phrase the trainer teaches (a rare token plus a class word); counted in every prompt.
BUDGET_SUBJECT_PHRASE = "ohwx person"
#: CLIP's vocabulary size: a tokenizer this large is the real one, whose count is exact.
CLIP_VOCABULARY = 49408
# CLIP's pre-tokenizer: words, single digits, runs of other symbols.
_PIECES = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")
# Common English words up to this length are one CLIP token; longer ones may split in two.
_ONE_TOKEN_LETTERS = 8

TokenCounter = Callable[[str], int]


class PromptTooLong(ValueError):
    """A style with a catalog choice that would not fit the text encoder's window."""


def estimated_tokens(text: str) -> int:
    """CLIP tokens of text, estimated on the high side: one per word (two for a long word), digit or
    symbol run."""
    pieces = _PIECES.findall(text.lower())
    return sum(2 if len(piece) > _ONE_TOKEN_LETTERS else 1 for piece in pieces)


def tokenizer_counter(pipe: object) -> TokenCounter:
    """The exact count of pipe's own tokenizer when it is CLIP's; the estimate otherwise."""
    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is None or len(tokenizer) < CLIP_VOCABULARY:
        return estimated_tokens
    return lambda text: len(tokenizer(text, add_special_tokens=False).input_ids)


def longest_prompts(styles: Iterable[Style], catalog: Catalog, count: TokenCounter) -> dict[str, str]:
    """Style id -> its prompt with the longest background, outfit and lighting (each by count)."""
    longest = Choices(
        *(
            max(catalog.options(kind), key=lambda o: count(o.prompt))
            for kind in ("background", "outfit", "lighting")
        )
    )
    return {style.id: style.with_choices(longest).prompt(BUDGET_SUBJECT_PHRASE) for style in styles}


def check_prompt_budget(
    styles: dict[str, Style], catalog: Catalog, count: TokenCounter = estimated_tokens
) -> None:
    """Raises PromptTooLong naming each style whose longest composed prompt exceeds the window."""
    over = {
        style_id: tokens
        for style_id, prompt in longest_prompts(styles.values(), catalog, count).items()
        if (tokens := count(prompt)) > PROMPT_TOKENS
    }
    if over:
        raise PromptTooLong(
            f"prompts over CLIP's {PROMPT_TOKENS} tokens with the longest catalog choices: {over}; "
            "shorten the style's template or the longest fragments"
        )
