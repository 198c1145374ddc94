"""Fails job records that were written but never queued (publish with reconciliation).

`SubmitTraining` and `SubmitRender` write the job's record (`queued`) and then publish its message on the
work queue. The two writes cannot be one transaction: a publish that fails (the stream refuses it, NATS is
unreachable, the serve replica dies in between) leaves a record that no worker will ever see. The serve
role reconciles: every `interval` seconds it lists the `queued` records older than `grace` seconds and
looks in the work-queue stream for each one's message (`Nats-Msg-Id` = job id, under the job's own NATS
subject, any priority). A record whose message is not there is failed with `NEVER_QUEUED_REASON`.

Why this is safe without a lease between serve replicas:
- A message stays in the work-queue stream until a worker acknowledges or terminates it, and a worker
  writes `running` (or an end) before either; so a `queued` record without a message is an orphan, unless
  a worker has just moved it on, which the compare-and-set below sees (it fails only a record still
  `queued` when it writes).
- Two replicas failing the same orphan race on the record's revision: one writes, the other finds it
  failed and counts nothing.

What a pass reads (issue 18, item 6): a record can only be an orphan while its latest revision is the one
its submit wrote, so once every record has been looked at (a full pass: every record of the bucket, at
start and then every `full_every` seconds) a pass looks only at the revisions written since the previous
pass's cutoff, read from the bucket's stream by time (`STREAM.MSG.GET` with `start_time`, then message by
message): its cost follows the jobs submitted and moved on lately, not the bucket's whole history. The
full pass stays, rarely, for a record whose message went later than its submit (the job stream's age
bound dropped a job no worker took for a week).

It reads only what the serve role already reads for the queue lag (the stream's messages one by one) and
writes only its own bucket: no NATS right is added. It publishes no `*.failed` event: the submit that left
the orphan answered an error, so nobody is waiting on the job, and the role holds no right on events.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Generic

import nats.errors
import nats.js.errors
from prometheus_client import Counter

from likeness.bus import KV_LIST_TIMEOUT_SECONDS, Bus, job_nats_subject, kv_records
from likeness.job_metrics import Queue, job_ended
from likeness.jobs import JS, JobRecords, R

log = logging.getLogger(__name__)

#: The reason an orphan's record carries (names nothing personal).
NEVER_QUEUED_REASON = "never queued: its work-queue message was not published (submit again)"

SWEEPS = Counter(
    "likeness_job_orphan_sweeps",
    "Sweeps for job records without a work-queue message, by outcome",
    ["queue", "outcome"],
)
ORPHANS_FAILED = Counter(
    "likeness_job_orphans_failed",
    "Queued job records failed because their work-queue message was missing",
    ["queue"],
)


#: How often a pass reads every record, not only the ones written since the previous pass.
FULL_SWEEP_SECONDS = 24 * 3600.0
#: A pass reads back this far before the previous cutoff: NATS stamps messages with its own clock, which
#: may run a little behind this one's (reading a record twice costs one look, missing one an orphan).
CLOCK_SLACK_SECONDS = 30.0


class OrphanSweeper(Generic[R]):
    """Fails the `queued` records of one job kind whose work-queue message is missing after `grace` s."""

    def __init__(
        self,
        bus: Bus,
        records: JobRecords[R],
        queue: Queue,
        grace: float,
        interval: float,
        full_every: float = FULL_SWEEP_SECONDS,
        clock_slack: float = CLOCK_SLACK_SECONDS,
    ) -> None:
        self.bus = bus
        self.records = records
        self.queue = queue
        self.grace = timedelta(seconds=grace)
        self.interval = interval
        self.full_every = full_every
        self.clock_slack = timedelta(seconds=clock_slack)
        #: The cutoff of the last pass that completed (None: no pass yet, the next one reads everything).
        self._looked_until: datetime | None = None
        self._last_full = 0.0
        #: Records the last pass looked at (what its cost follows).
        self.last_examined = 0
        for outcome in ("ok", "error"):
            SWEEPS.labels(queue.label, outcome)
        ORPHANS_FAILED.labels(queue.label)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                failed = await self.sweep()
            except (nats.errors.Error, nats.js.errors.Error, OSError, RuntimeError) as exc:
                SWEEPS.labels(self.queue.label, "error").inc()
                log.warning(
                    "orphan sweep failed", extra={"queue": self.queue.label, "error": type(exc).__name__}
                )
            else:
                SWEEPS.labels(self.queue.label, "ok").inc()
                if failed:
                    log.warning("failed orphaned jobs", extra={"queue": self.queue.label, "count": failed})

    async def sweep(self) -> int:
        """One pass; returns how many orphans it failed."""
        cutoff = datetime.now(UTC) - self.grace
        full = self._looked_until is None or time.monotonic() - self._last_full >= self.full_every
        if full:
            started = time.monotonic()
            failed = await self._look_at(
                [record for record, _ in await kv_records(self.records.kv, self.records.cls)], cutoff
            )
            self._last_full = started
        else:
            assert self._looked_until is not None
            since = self._looked_until - self.clock_slack
            failed = await self._look_at([record async for record in self._written(since, cutoff)], cutoff)
        self._looked_until = cutoff
        return failed

    async def _look_at(self, records: list[R], cutoff: datetime) -> int:
        self.last_examined = len(records)
        failed = 0
        for record in records:
            tenant, job_id, subject_id = (
                str(getattr(record, name)) for name in ("tenant", "id", "subject_id")
            )
            created = getattr(record, "created_at").ToDatetime(tzinfo=UTC)  # noqa: B009 - a job record
            if getattr(record, "status") != JS.JOB_STATUS_QUEUED or created > cutoff:  # noqa: B009
                continue
            # The job's message, one get per message of its person's job subjects (a handful at most; a
            # render's subject holds its priority, matched by a wildcard).
            priority = "*" if self.queue.queues.prioritized else None
            nats_subject = job_nats_subject(
                self.queue.label, tenant, subject_id, priority
            )  # label = job kind
            if await self.bus.holds_message(nats_subject, job_id, self.queue.stream):
                continue
            if await self._fail_if_still_queued(tenant, job_id):
                ORPHANS_FAILED.labels(self.queue.label).inc()
                job_ended(self.queue, JS.JOB_STATUS_FAILED)
                failed += 1
        return failed

    async def _written(self, since: datetime, until: datetime) -> AsyncIterator[R]:
        """The records whose latest revision NATS stored between `since` and `until` (the bucket keeps
        one revision per key: every message in its stream is a record's latest), oldest first."""
        kv = self.records.kv
        api = f"{self.bus.js._prefix}.STREAM.MSG.GET.{kv._stream}"
        request: dict[str, object] = {"start_time": since.isoformat().replace("+00:00", "Z")}
        while True:
            reply = await self.bus.nc.request(
                api, json.dumps(request).encode(), timeout=KV_LIST_TIMEOUT_SECONDS
            )
            response = json.loads(reply.data)
            message = response.get("message")
            if message is None:  # nothing from there on (404), or an error the caller reports
                if (response.get("error") or {}).get("code") == 404:
                    return
                raise nats.js.errors.APIError.from_error(response["error"])
            if datetime.fromisoformat(message["time"]) > until:
                return
            data = base64.b64decode(message.get("data") or "")
            if data:  # a delete or purge marker has none
                record = self.records.cls()
                record.ParseFromString(data)
                yield record
            request = {"seq": int(message["seq"]) + 1, "next_by_subj": f"{kv._pre}>"}

    async def _fail_if_still_queued(self, tenant: str, job_id: str) -> bool:
        """Fails the record if it is still `queued` when written (compare-and-set); whether this call did."""
        changed = False

        def fail(record: R) -> bool:
            nonlocal changed
            # A worker (or another replica) moved it on since the listing: leave it.
            changed = bool(getattr(record, "status") == JS.JOB_STATUS_QUEUED)  # noqa: B009 - a job record
            if changed:
                setattr(record, "status", JS.JOB_STATUS_FAILED)  # noqa: B010
                setattr(record, "error", NEVER_QUEUED_REASON)  # noqa: B010
            return changed

        await self.records.mutate(tenant, job_id, fail)
        return changed
