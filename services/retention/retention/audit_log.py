"""Reading the audit trail back (issue 16, item 2): a person's processing log and a tenant's whole trail.

A person's records share one NATS subject prefix, `audit.<tenant>.<pseudonym>.*` (`likeness.audit`), so
their log is a filtered read of the audit stream, never a scan of six years: each record is one
`STREAM.MSG.GET` with `next_by_subj` from a sequence (no consumer is created, so retention needs only the
stream's info and message-get rights, `likeness.provisioning`). A page is the records after the sequence
of the previous page's last one (its `next_page_token`), oldest first; one record more is looked up to
know whether another page follows.
"""

from __future__ import annotations

import re

import nats.js.errors
from nats.js.client import JetStreamContext

from likeness.bus import audit_log_filter
from likeness.provisioning import AUDIT_STREAM
from likeness.v1 import events_pb2, retention_pb2

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
#: A page token: the audit stream sequence of the last record of the previous page.
_SEQUENCE = re.compile(r"^[1-9][0-9]{0,19}$")
#: The largest sequence a stream can reach (uint64): a page token past it names nothing.
_LAST_SEQUENCE = 2**64 - 1


class InvalidPageToken(ValueError):
    """The page token is not a sequence a previous page gave."""


def page_size(requested: int) -> int:
    """0 means the default; anything else is clamped to 1..MAX_PAGE_SIZE."""
    return DEFAULT_PAGE_SIZE if requested <= 0 else min(requested, MAX_PAGE_SIZE)


def start_after(page_token: str) -> int:
    """The first sequence to look at for a page token ("" is the first page)."""
    if not page_token:
        return 1
    if not _SEQUENCE.fullmatch(page_token):
        raise InvalidPageToken(page_token)
    after = int(page_token)
    if after >= _LAST_SEQUENCE:  # JetStream's sequences are uint64: a larger one is no page of ours
        raise InvalidPageToken(page_token)
    return after + 1


def entry_of(sequence: int, record: events_pb2.AuditRecord, with_pseudonym: bool) -> retention_pb2.AuditEntry:
    entry = retention_pb2.AuditEntry(
        sequence=sequence,
        action=record.action,
        principal=record.principal,
        purpose=record.purpose,
        outcome=record.outcome,
        resource_id=record.resource_id,
        notice=record.notice,
        actor=record.actor,
        subject_hmac=record.subject_hmac if with_pseudonym else "",
    )
    entry.at.CopyFrom(record.at)
    return entry


class AuditLog:
    """Pages of audit records under one NATS filter."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def page(
        self, filter_subject: str, page_token: str, requested_size: int, *, with_pseudonym: bool
    ) -> tuple[list[retention_pb2.AuditEntry], str]:
        """The records of a page and the next page's token ("" on the last page)."""
        size = page_size(requested_size)
        sequence = start_after(page_token)
        entries: list[retention_pb2.AuditEntry] = []
        while len(entries) <= size:
            try:
                message = await self._js.get_msg(
                    AUDIT_STREAM, seq=sequence, subject=filter_subject, next=True
                )
            except nats.js.errors.NotFoundError:
                return entries, ""
            found = int(message.seq or sequence)
            if len(entries) == size:  # one more exists: the page ends at the last one taken
                return entries, str(entries[-1].sequence)
            record = events_pb2.AuditRecord()
            record.ParseFromString(message.data or b"")
            entries.append(entry_of(found, record, with_pseudonym))
            sequence = found + 1
        return entries, ""

    async def of_person(
        self, tenant: str, pseudonym: str, page_token: str, requested_size: int
    ) -> tuple[list[retention_pb2.AuditEntry], str]:
        return await self.page(
            audit_log_filter(tenant, pseudonym), page_token, requested_size, with_pseudonym=False
        )

    async def of_tenant(
        self, tenant: str, page_token: str, requested_size: int
    ) -> tuple[list[retention_pb2.AuditEntry], str]:
        return await self.page(audit_log_filter(tenant), page_token, requested_size, with_pseudonym=True)
