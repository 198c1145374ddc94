"""Pages of a subject's job records (trainings, renders), newest first, for the services' List RPCs.

Records are keyed `<tenant>.<job_id>` and ids sort by creation time: the tenant's records are read from
one consistent snapshot of its keys (`likeness.bus.kv_entries`), and the page token is simply the last id
of the previous page. (A page costs in proportion to the tenant's records: bounded listings are later work.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.message import Message

from likeness import ids
from likeness.item_deletion import is_marked
from likeness.jobs import JobRecords

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100

R = TypeVar("R", bound=Message)


class InvalidPage(ValueError):
    """A page request the caller must fix (`code` is the API's machine code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def page_size(requested: int) -> int:
    size = requested or DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidPage("invalid_page_size", f"page_size must be 1..{MAX_PAGE_SIZE}.")
    return size


@dataclass(frozen=True)
class Page(Generic[R]):
    records: list[R]
    next_page_token: str


async def subject_page(
    records: JobRecords[R], tenant: str, subject_id: str, requested_size: int, page_token: str, id_prefix: str
) -> Page[R]:
    """One page of the subject's records (less those a per-item deletion has begun on); an unknown tenant
    or subject is simply an empty page."""
    size = page_size(requested_size)
    if page_token and not ids.is_valid_id(page_token, id_prefix):
        raise InvalidPage("invalid_page_token", "The page token is not valid.")
    if not ids.is_valid_tenant(tenant) or not ids.is_valid_id(subject_id, "sub"):
        return Page([], "")
    mine = sorted(
        (
            record
            for record in await records.tenant_records(tenant)
            if _subject_of(record) == subject_id and not is_marked(record)
        ),
        key=_id_of,
        reverse=True,
    )
    if page_token:
        mine = [record for record in mine if _id_of(record) < page_token]
    page = mine[:size]
    return Page(page, _id_of(page[-1]) if len(mine) > size and page else "")


def _id_of(record: Message) -> str:
    return str(getattr(record, "id"))  # noqa: B009 - R is a job record


def _subject_of(record: Message) -> str:
    return str(getattr(record, "subject_id"))  # noqa: B009 - R is a job record
