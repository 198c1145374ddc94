"""Identifiers: random, sortable by creation time, safe as NATS subject tokens and S3 key segments.

Every check of an id or tenant that came from outside is a *full* match (`\\A...\\Z`, `re.fullmatch`): a
pattern ending in `$` also accepts a trailing newline (`sub_...\\n`), which then reaches NATS as a subject
token it refuses (a 500 instead of a 404). The character classes are ASCII ranges, so neither another
script's digits nor upper case pass.
"""

from __future__ import annotations

import re
import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_PREFIXES = ("sub", "pho", "trn", "ren", "img", "era", "job", "cns")
ID_PATTERN = re.compile(r"\A(?:" + "|".join(_PREFIXES) + r")_[0-9a-hjkmnp-tv-z]{26}\Z", re.ASCII)
#: A subject id anywhere in a text (object keys, Vault key names, URLs): what log lines must never carry.
SUBJECT_ID_IN_TEXT = re.compile(r"\bsub_[0-9a-hjkmnp-tv-z]{26}\b")
TENANT_PATTERN = re.compile(r"\A[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?\Z", re.ASCII)


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


_RANDOM_BITS = 80
_last = (0, 0)  # (millis, random) of this process's latest id
_last_lock = threading.Lock()


def new_id(prefix: str) -> str:
    """A ULID-shaped id (48-bit millisecond time, 80 random bits) with a kind prefix, e.g. `sub_01j...`.

    Monotonic within a process, as ULID specifies: a second id in the same millisecond takes the previous
    one's random part plus one, so ids made in a row sort in the order they were made (lists are ordered
    by id, and photos uploaded together must list in upload order).
    """
    global _last
    if prefix not in _PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    millis = time.time_ns() // 1_000_000
    with _last_lock:
        last_millis, last_random = _last
        if millis <= last_millis:
            millis, random = last_millis, last_random + 1
            if random >> _RANDOM_BITS:  # 2^80 ids in one millisecond: borrow the next one
                millis, random = millis + 1, secrets.randbits(_RANDOM_BITS - 1)
        else:
            # One bit of headroom keeps the +1 steps from overflowing within a millisecond.
            random = secrets.randbits(_RANDOM_BITS - 1)
        _last = (millis, random)
    return f"{prefix}_{_encode(millis, 10)}{_encode(random, 16)}"


def is_valid_id(value: str, prefix: str) -> bool:
    """Whether `value` is, whole, an id of kind `prefix` (`sub`, `pho`...)."""
    return isinstance(value, str) and value.startswith(prefix + "_") and is_any_id(value)


def is_any_id(value: str) -> bool:
    """Whether `value` is, whole, an id of any kind."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def is_valid_tenant(value: str) -> bool:
    """Whether `value` is, whole, a tenant name (1-40 lower-case letters, digits and inner dashes)."""
    return isinstance(value, str) and TENANT_PATTERN.fullmatch(value) is not None


def redact_subject_ids(text: str) -> str:
    """`text` with every subject id replaced by a placeholder (a last line of defence for logs)."""
    return SUBJECT_ID_IN_TEXT.sub("sub_<redacted>", text)
