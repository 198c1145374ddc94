"""Cursor pagination for every list: `?limit=` (1..100, default 50) and `?cursor=`.

A cursor is the id of the last item of the previous page (`next_cursor`): the next page starts after it.
Ids sort by creation time, so any well-formed id of the list's kind is a place in the list, and the
schema can say exactly which cursors are valid (a pattern per list). One that is not an id of the list's
kind answers 400 `invalid_cursor`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Query

from gateway.errors import ApiError
from likeness.ids import is_valid_id

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
#: The characters after an id's kind prefix (see `likeness.ids`: 26 of Crockford's base32, lower case).
ID_BODY_PATTERN = "[0-9a-hjkmnp-tv-z]{26}"

Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1..100)", examples=[DEFAULT_LIMIT])
]


def _cursor(prefix: str, example: str) -> Any:
    # The pattern is documented, not enforced by FastAPI: a cursor that breaks it answers 400
    # `invalid_cursor` (from `decode_cursor`), as it always has, rather than 422.
    return Annotated[
        str | None,
        Query(
            description="`next_cursor` of the previous page; absent for the first page",
            examples=[example],
            json_schema_extra={"pattern": f"^{prefix}_{ID_BODY_PATTERN}$"},
        ),
    ]


SubjectCursor = _cursor("sub", "sub_01jbz3k7q8m2x4v6n9p0r5t7wy")
PhotoCursor = _cursor("pho", "pho_01jbz3m2a4c6e8g0j2k4m6p8rt")
TrainingCursor = _cursor("trn", "trn_01jbz3p5b7d9f1h3k5m7q9s1vw")
RenderCursor = _cursor("ren", "ren_01jbz3r8c0e2g4j6m8p0s2v4xy")
#: Audit pages resume after a record's sequence in the trail (`sequence` of the last entry): at most 19
#: digits, so that every cursor the schema admits is a JetStream sequence (uint64), none refused past it.
AUDIT_CURSOR_PATTERN = "^[1-9][0-9]{0,18}$"
AuditCursor = Annotated[
    str | None,
    Query(
        description="`next_cursor` of the previous page; absent for the first page",
        examples=["1042"],
        json_schema_extra={"pattern": AUDIT_CURSOR_PATTERN},
    ),
]


def invalid_cursor() -> ApiError:
    return ApiError(400, "invalid_cursor", "The cursor is not valid: use next_cursor of a previous page.")


def decode_cursor(cursor: str | None, prefix: str) -> str:
    """The id the page starts after ("" for the first page)."""
    if cursor is None:
        return ""
    if not is_valid_id(cursor, prefix):
        raise invalid_cursor()
    return cursor


def decode_sequence_cursor(cursor: str | None) -> str:
    """The audit sequence the page starts after ("" for the first page)."""
    if cursor is None:
        return ""
    if not re.fullmatch(AUDIT_CURSOR_PATTERN, cursor):
        raise invalid_cursor()
    return cursor


def next_cursor(after_id: str) -> str | None:
    """The cursor of the page after the one ending with `after_id` ("": the last page)."""
    return after_id or None


async def every_page(fetch: Callable[[str], Awaitable[tuple[list[T], str]]]) -> list[T]:
    """Every item of a paged backend list (`fetch(page_token)` gives a page and the next token), following
    its page tokens to the end: for callers that need the whole list (the export, a job's photo checks)."""
    items: list[T] = []
    token = ""
    while True:
        page, token = await fetch(token)
        items.extend(page)
        if not token:
            return items
