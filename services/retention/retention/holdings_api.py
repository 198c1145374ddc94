"""Retention's `DescribeHoldings` (part of `RetentionServicer`): what is held about one subject, per category,
with every item's deletion date and the rule that sets it (`retention.holdings`).

Answered to the person's own token or a tenant-level one (`retention.method_rules`), for a live subject
only: an erased subject holds nothing to describe. A status read of the person's holdings, not an access to
their personal data (nothing is decrypted), so it writes no audit record.

The processing log is counted from the audit stream's per-subject counts (one stream info filtered to the
person's pseudonym, `audit.<tenant>.<pseudonym>.*`) and its newest record is one message get: never a read
of the whole log. That newest record is the person's last access.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import nats.errors
import nats.js.errors

from likeness.audit import AuditTrail
from likeness.bus import audit_log_filter
from likeness.object_names import subject_prefix
from likeness.provisioning import AUDIT_STREAM, stream
from likeness.rpc_errors import abort
from likeness.runtime import Platform
from likeness.store import StoreError
from likeness.timeutil import Clock, from_timestamp
from likeness.v1 import events_pb2, retention_pb2
from retention.consents import ConsentBook
from retention.erasure import Eraser
from retention.holdings import LogHoldings, describe

Context = grpc.aio.ServicerContext[object, object]
SS = retention_pb2.SubjectStatus


class HoldingsMethods:
    """The holdings half of `RetentionServicer` (which provides these attributes and `_require_subject`)."""

    platform: Platform
    audit: AuditTrail
    consents: ConsentBook
    eraser: Eraser
    clock: Clock

    async def _require_subject(
        self, tenant: str, subject_id: str, context: Context
    ) -> tuple[retention_pb2.Subject, int]:
        raise NotImplementedError

    async def _log_holdings(self, subject: retention_pb2.Subject) -> LogHoldings | None:
        """The person's processing log: its record count and newest record (None when the audit stream
        cannot be read now: the log is then left out, and the last access is the subject's last activity)."""
        js = self.platform.bus.js
        log_filter = audit_log_filter(subject.tenant, self.audit.subject_hmac(subject.tenant, subject.id))
        try:
            info = await js.stream_info(AUDIT_STREAM, subjects_filter=log_filter)
            count = sum((info.state.subjects or {}).values())
            if not count:
                return LogHoldings(count=0, bytes=0, newest_at=None, kept_until=None)
            # The last message of a wildcard filter: the person's newest record, whatever its action.
            message = await js.get_msg(AUDIT_STREAM, subject=log_filter)
        except (nats.errors.Error, nats.js.errors.Error):
            return None
        newest = events_pb2.AuditRecord.FromString(message.data or b"")
        newest_at = from_timestamp(newest.at)
        max_age = stream(AUDIT_STREAM).max_age
        kept = newest_at + timedelta(seconds=max_age) if newest_at and max_age else None
        return LogHoldings(count=count, bytes=0, newest_at=newest_at, kept_until=kept)

    async def DescribeHoldings(
        self, request: retention_pb2.DescribeHoldingsRequest, context: Context
    ) -> retention_pb2.DescribeHoldingsResponse:
        subject, _ = await self._require_subject(request.tenant, request.subject_id, context)
        if subject.status != SS.SUBJECT_STATUS_ACTIVE:
            await abort(
                context, grpc.StatusCode.FAILED_PRECONDITION, "subject_erased", "The subject is erased."
            )
        prefix = subject_prefix(subject.tenant, subject.id)
        try:
            versions = await asyncio.to_thread(self.eraser.store.versions, prefix)
        except StoreError:
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                "storage_unavailable",
                "Storage is unavailable; retry later.",
            )
        deadlines = [
            deadline for deadline, _ in await self.eraser.deadlines.of_subject(subject.tenant, subject.id)
        ]
        grants = await self.consents.history(subject.tenant, subject.id)
        log = await self._log_holdings(subject)
        return describe(subject, versions, deadlines, grants, log, self.clock.now())
