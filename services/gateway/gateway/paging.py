"""Cursor pagination for every list: `?limit=` (1..100, default 50) and an opaque `?cursor=`.

A cursor is URL-safe base64 of a small JSON object naming the last item of the previous page; clients
must treat it as opaque. One that does not decode, or names an item of another kind, answers 400
`invalid_cursor`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated

from fastapi import Query

from gateway.errors import ApiError
from likeness.ids import is_valid_id

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 200

Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1..100)", examples=[DEFAULT_LIMIT])
]
Cursor = Annotated[
    str | None,
    Query(
        max_length=MAX_CURSOR_LENGTH,
        description="`next_cursor` of the previous page (opaque); absent for the first page",
        examples=["eyJhIjoic3ViXzAxamJ6M2s3cThtMng0djZuOXAwcjV0N3d5In0"],
    ),
]
NEXT_CURSOR_DESCRIPTION = "Pass as `cursor` for the next page; null on the last page"


def invalid_cursor() -> ApiError:
    return ApiError(400, "invalid_cursor", "The cursor is not valid: use next_cursor of a previous page.")


def encode_cursor(after_id: str) -> str:
    raw = json.dumps({"a": after_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str | None, prefix: str) -> str:
    """The id the page starts after ("" for the first page)."""
    if cursor is None:
        return ""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = json.loads(raw)["a"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise invalid_cursor() from None
    if not isinstance(after, str) or not is_valid_id(after, prefix):
        raise invalid_cursor()
    return after


def next_cursor(page_token: str) -> str | None:
    return encode_cursor(page_token) if page_token else None
