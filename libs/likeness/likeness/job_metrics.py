"""Prometheus metrics of the GPU work queues: how jobs end, which ones were dead-lettered, and the queue lag.

- Job ends (`likeness_jobs_finished_total{queue,status}`) and dead letters
  (`likeness_jobs_dead_lettered_total{queue}`: failed on their last allowed delivery, or left behind by
  workers that died on every delivery) are counted by the workers; `init_job_metrics` creates every series
  at zero when a worker starts, so rates and alerts see a 0 rather than nothing.
- Queue lag (`likeness_queue_*{queue}`) is read from JetStream (one listing of the queue's per-tenant
  consumers, summed; the stream's message count and oldest message) by `QueueLagMonitor`, which runs in the
  always-up `serve` role of trainer and renderer: the GPU workers themselves may be scaled to zero exactly
  when the lag matters. `likeness_queue_backlog_messages` (every job not yet finished, all tenants) is what
  KEDA scales the workers on.

Labels are the queue ("train", "render") and a job status: fixed sets, never ids or tenants (so no
per-tenant series: their number would grow with the tenants).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge

from likeness.provisioning import RENDER_QUEUES, TRAIN_QUEUES, TenantQueues
from likeness.tenant_queues import list_backlogs
from likeness.v1 import common_pb2

log = logging.getLogger(__name__)

STATUSES = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Queue:
    label: str
    queues: TenantQueues

    @property
    def stream(self) -> str:
        return self.queues.stream


#: The work queues (the label is the job kind), split into per-tenant consumers (`likeness.tenant_queues`).
TRAIN = Queue("train", TRAIN_QUEUES)
RENDER = Queue("render", RENDER_QUEUES)

JOBS_FINISHED = Counter(
    "likeness_jobs_finished", "Jobs that reached an end, by queue and status", ["queue", "status"]
)
JOBS_DEAD_LETTERED = Counter(
    "likeness_jobs_dead_lettered",
    "Jobs failed because every delivery was used up (the last attempt failed, or every worker died on it)",
    ["queue"],
)
PENDING = Gauge(
    "likeness_queue_pending_messages", "Jobs waiting in the queue, not yet delivered to a worker", ["queue"]
)
BACKLOG = Gauge(
    "likeness_queue_backlog_messages",
    "Jobs in the queue not yet finished, all tenants (waiting, running or due again): what KEDA scales on",
    ["queue"],
)
ACK_PENDING = Gauge(
    "likeness_queue_ack_pending_messages", "Jobs delivered to a worker and not yet finished", ["queue"]
)
REDELIVERED = Gauge(
    "likeness_queue_redelivered_messages", "Jobs delivered more than once and not yet finished", ["queue"]
)
WAITING_PULLS = Gauge(
    "likeness_queue_waiting_pulls",
    "Pull requests waiting for a job (workers fetch without waiting, `likeness.tenant_queues`: normally 0)",
    ["queue"],
)
OLDEST_AGE = Gauge(
    "likeness_queue_oldest_message_age_seconds",
    "Age of the oldest job still in the queue (waiting or running); 0 when the queue is empty",
    ["queue"],
)
MONITOR_ERRORS = Counter(
    "likeness_queue_monitor_errors", "Queue lag readings that failed (JetStream unreachable)", ["queue"]
)


def init_job_metrics(queue: Queue) -> None:
    """Creates the queue's job series at zero (a worker calls this once at start)."""
    for status in STATUSES:
        JOBS_FINISHED.labels(queue.label, status)
    JOBS_DEAD_LETTERED.labels(queue.label)


_STATUS_LABELS = {
    common_pb2.JOB_STATUS_SUCCEEDED: "succeeded",
    common_pb2.JOB_STATUS_FAILED: "failed",
    common_pb2.JOB_STATUS_CANCELLED: "cancelled",
}


def job_ended(
    queue: Queue, status: common_pb2.JobStatus.ValueType, *, delivery: int = 1, max_deliver: int = 0
) -> None:
    """Counts a job's end. A failure on its last allowed delivery (or later: the delivery a worker keeps to
    fail a job whose every attempt died) is also a dead letter: nothing will try it again."""
    label = _STATUS_LABELS.get(status)
    if label is None:
        return  # not an end
    JOBS_FINISHED.labels(queue.label, label).inc()
    if label == "failed" and max_deliver and delivery >= max_deliver:
        JOBS_DEAD_LETTERED.labels(queue.label).inc()


class QueueLagMonitor:
    """Reads a work queue's lag from JetStream every `interval` seconds into the `likeness_queue_*` gauges."""

    def __init__(self, js: JetStreamContext, queue: Queue, interval: float = 10.0) -> None:
        self.js = js
        self.queue = queue
        self.interval = interval
        for gauge in (PENDING, BACKLOG, ACK_PENDING, REDELIVERED, WAITING_PULLS, OLDEST_AGE):
            gauge.labels(queue.label).set(0)
        MONITOR_ERRORS.labels(queue.label)

    async def run(self) -> None:
        while True:
            try:
                await self.measure()
            except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                MONITOR_ERRORS.labels(self.queue.label).inc()
                error = type(exc).__name__
                log.warning("queue lag not read", extra={"queue": self.queue.label, "error": error})
            await asyncio.sleep(self.interval)

    async def measure(self) -> None:
        label = self.queue.label
        stream = await self.js.stream_info(self.queue.stream)
        backlogs = await list_backlogs(self.js, self.queue.queues)
        # A work queue holds a job until it is acknowledged: the stream's count is the whole backlog, also
        # any message no tenant consumer selects yet.
        BACKLOG.labels(label).set(stream.state.messages)
        PENDING.labels(label).set(sum(backlog.pending for backlog in backlogs))
        ACK_PENDING.labels(label).set(sum(backlog.unacked for backlog in backlogs))
        REDELIVERED.labels(label).set(sum(backlog.redelivered for backlog in backlogs))
        WAITING_PULLS.labels(label).set(sum(backlog.waiting for backlog in backlogs))
        OLDEST_AGE.labels(label).set(await self._oldest_age(stream.state.messages, stream.state.first_seq))

    async def _oldest_age(self, messages: int, first_seq: int) -> float:
        # A work queue drops a job once it is acknowledged: the stream's first message is the oldest job
        # not yet finished. Only its timestamp is used.
        if not messages:
            return 0.0
        try:
            oldest = await self.js.get_msg(self.queue.stream, seq=first_seq)
        except nats.js.errors.NotFoundError:
            return 0.0  # acknowledged between the two reads
        if oldest.time is None:
            return 0.0
        return max(0.0, (datetime.now(UTC) - oldest.time).total_seconds())
