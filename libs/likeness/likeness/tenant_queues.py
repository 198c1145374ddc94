"""Fair scheduling across tenants: per-tenant work queues, created by the serve role, taken round-robin.

A work queue (`LIKENESS_JOBS_TRAIN`, `LIKENESS_JOBS_RENDER`) has one durable pull consumer per tenant (for
renders, per tenant and priority: `likeness.provisioning.TenantQueues`), with filters that never overlap.

- `QueueScheduler` (the serve role): before it publishes a tenant's job it makes sure that tenant's consumer
  exists (created idempotently, with the service's `ack_wait_seconds` and `max_deliver` plus the reserved
  final delivery). Its NATS user may create consumers of its own stream over its own jobs' subjects only;
  workers may create none.
- `TenantQueuePicker` (a GPU worker): one job at a time. Before each, one `CONSUMER.LIST` of the stream says
  which tenants have work (messages never delivered, or delivered and unacknowledged: a redelivery may be
  due); the worker serves the next such tenant after the one it served last (round-robin), its interactive
  queue before its bulk one, with a no-wait fetch of one message (a queue whose only job runs on another
  worker answers "none" at once, and the next is tried). So while tenant A has hundreds of jobs queued,
  tenant B's first job waits for at most the job each worker is running. Idle, a worker lists again after a
  growing pause (at most `job_idle_poll_max_seconds`): one small request per pause.

Consumer names and filters hold the tenant name, which is an operator-given identifier, never a person's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from likeness.provisioning import PRIORITIES, TenantQueues

log = logging.getLogger(__name__)

#: How long the serve role trusts that a consumer it made still exists before making sure again (an
#: operator may have deleted it; making it again is one idempotent request).
ENSURE_AGAIN_SECONDS = 600.0
#: The server lists at most this many consumers per `CONSUMER.LIST` page.
LIST_PAGE = 256


def consumer_max_deliver(attempts: int) -> int:
    """A job consumer's MaxDeliver: the attempts plus the final delivery every job worker reserves to fail a
    job whose every attempt died without answering (`QueueWorker`)."""
    return attempts + 1


class QueueScheduler:
    """Creates a tenant's consumer of a work queue before its first job is published (serve role)."""

    def __init__(self, js: JetStreamContext, queues: TenantQueues, *, ack_wait: float, attempts: int) -> None:
        self.js = js
        self.queues = queues
        self.ack_wait = ack_wait
        self.max_deliver = consumer_max_deliver(attempts)
        self._made: dict[str, float] = {}  # consumer name -> when this process last made sure of it

    async def ensure(self, tenant: str, priority: str | None = None) -> str:
        """The name of the tenant's consumer (for `priority`), made if this process has not lately."""
        spec = self.queues.consumer(tenant, priority, ack_wait=self.ack_wait, max_deliver=self.max_deliver)
        made = self._made.get(spec.name)
        if made is not None and time.monotonic() - made < ENSURE_AGAIN_SECONDS:
            return spec.name
        # Creating a consumer that exists with this configuration changes nothing; with another AckWait or
        # MaxDeliver (changed settings) it updates them; its filter never changes (it is in the name).
        await self.js.add_consumer(self.queues.stream, spec.config())
        self._made[spec.name] = time.monotonic()
        return spec.name


@dataclass(frozen=True)
class Backlog:
    """One tenant consumer's work as the server listed it."""

    consumer: str
    tenant: str
    priority: str | None
    #: Messages never delivered.
    pending: int
    #: Delivered and not yet acknowledged: running on a worker, or waiting for a redelivery.
    unacked: int
    #: Of those, delivered more than once.
    redelivered: int = 0
    #: Pull requests waiting on it (idle workers blocked on this consumer; 0 with `no_wait` fetches).
    waiting: int = 0
    #: Its AckWait and MaxDeliver, as the serve role made it: they rule a job fetched from it.
    ack_wait: float = 0.0
    max_deliver: int = 0

    @property
    def has_work(self) -> bool:
        return self.pending > 0 or self.unacked > 0


def visiting_order(backlogs: Sequence[Backlog], last_tenant: str | None) -> list[Backlog]:
    """The consumers to try, in order: tenants with work round-robin, starting after `last_tenant` (in name
    order, wrapping around); within a tenant by priority (interactive before bulk), and its consumers with
    queued messages before those with only unacknowledged ones."""
    with_work = [backlog for backlog in backlogs if backlog.has_work]
    tenants = sorted({backlog.tenant for backlog in with_work})
    if last_tenant is not None:
        later = [tenant for tenant in tenants if tenant > last_tenant]
        tenants = later + [tenant for tenant in tenants if tenant <= last_tenant]

    def rank(backlog: Backlog) -> tuple[bool, int]:
        priority = PRIORITIES.index(backlog.priority) if backlog.priority in PRIORITIES else 0
        return (backlog.pending == 0, priority)

    order: list[Backlog] = []
    for tenant in tenants:
        order += sorted((backlog for backlog in with_work if backlog.tenant == tenant), key=rank)
    return order


async def list_backlogs(js: JetStreamContext, queues: TenantQueues) -> list[Backlog]:
    """Every tenant consumer of the queue's stream with its counts: one request per 256 consumers."""
    found: list[Backlog] = []
    offset = 0
    while True:
        page = await js.consumers_info(queues.stream, offset=offset)
        for info in page:
            parsed = queues.parse_filter(info.config.filter_subject or "")
            if parsed is None or not info.name:
                continue  # not a tenant consumer of this queue
            found.append(
                Backlog(
                    info.name,
                    *parsed,
                    pending=int(info.num_pending or 0),
                    unacked=int(info.num_ack_pending or 0),
                    redelivered=int(info.num_redelivered or 0),
                    waiting=int(info.num_waiting or 0),
                    ack_wait=float(info.config.ack_wait or 0.0),
                    max_deliver=int(info.config.max_deliver or 0),
                )
            )
        offset += len(page)
        if len(page) < LIST_PAGE:
            return found


class TenantQueuePicker:
    """A worker's next message from the tenant consumers of one work queue (see the module)."""

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        queues: TenantQueues,
        *,
        idle_max: float = 2.0,
        timeout: float = 5.0,
    ) -> None:
        self.nc = nc
        self.js = js
        self.queues = queues
        self.idle_max = idle_max
        self.timeout = timeout
        self.last_tenant: str | None = None
        self._subscription: Subscription | None = None

    async def backlogs(self) -> list[Backlog]:
        return await list_backlogs(self.js, self.queues)

    async def next(self) -> tuple[Msg, Backlog] | None:
        """The next message to run and the consumer it came from, or None when no tenant has one now."""
        for backlog in visiting_order(await self.backlogs(), self.last_tenant):
            msg = await self._fetch_now(backlog.consumer)
            if msg is not None:
                self.last_tenant = backlog.tenant
                return msg, backlog
        return None

    async def messages(self, stop: asyncio.Event) -> AsyncIterator[tuple[Msg, Backlog]]:
        """Messages until `stop`; between them, while idle, pauses that grow to `idle_max`."""
        pause = 0.0
        while not stop.is_set():
            try:
                found = await self.next()
            except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                log.warning("could not look for work", extra={"error": type(exc).__name__})
                found = None
            if found is not None:
                pause = 0.0
                yield found
                continue
            pause = min(self.idle_max, max(0.1, pause * 2))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=pause)

    async def _fetch_now(self, consumer: str) -> Msg | None:
        """One message of the consumer if one is available at once (`no_wait`), else None.

        A pull delivery carries the job's own NATS subject, not the request's reply subject, so a muxed
        `request()` cannot route it: the picker reads its own inbox, one request at a time.
        """
        inbox = await self._inbox()
        await self._settle_late_replies(inbox)
        request = json.dumps({"batch": 1, "no_wait": True}).encode()
        subject = f"{self.js._prefix}.CONSUMER.MSG.NEXT.{self.queues.stream}.{consumer}"
        await self.nc.publish(subject, request, reply=inbox.subject)
        try:
            msg = await inbox.next_msg(timeout=self.timeout)
        except nats.errors.TimeoutError:
            return None
        # A status (404 no messages, 408 request expired, 409 consumer deleted...) is "nothing here now".
        if JetStreamContext.is_status_msg(msg) or not msg.reply:
            return None
        return msg

    async def _inbox(self) -> Subscription:
        if self._subscription is None:
            # Under the identity's own inbox prefix (`_INBOX.<identity>.`), the only one it may read.
            self._subscription = await self.nc.subscribe(self.nc.new_inbox())
        return self._subscription

    async def _settle_late_replies(self, inbox: Subscription) -> None:
        """A job delivered after its request timed out would wait in the inbox, unseen until its AckWait
        passed: it goes back to its queue at once instead (a server that slow is rare)."""
        while inbox.pending_msgs:
            late = await inbox.next_msg(timeout=1.0)
            if not JetStreamContext.is_status_msg(late) and late.reply:
                with contextlib.suppress(nats.errors.Error):
                    await late.nak()
