"""The trainer's domain events on `LIKENESS_EVENTS`: completion (exactly once), failure, and their removal.

`training.completed` carries the training id as `Nats-Msg-Id`, so a retried publish inside the stream's
duplicate window is stored once. A delivery that resumes a job another worker finished but did not get
to acknowledge may come later than that window, so it first looks for the event in the stream.
"""

from __future__ import annotations

import nats.js.errors

from likeness.bus import EVENTS_STREAM, Bus, event_nats_subject
from likeness.timeutil import now_timestamp
from likeness.v1 import events_pb2, jobs_pb2

COMPLETED = "training.completed"
FAILED = "training.failed"
PROGRESS = "training.progress"


async def publish_completed(bus: Bus, job: jobs_pb2.TrainJob) -> None:
    event = events_pb2.TrainingCompleted(
        tenant=job.tenant, subject_id=job.subject_id, training_id=job.training_id, at=now_timestamp()
    )
    await bus.publish(
        event_nats_subject(job.tenant, job.subject_id, COMPLETED),
        event,
        msg_id=f"{job.training_id}.completed",
    )


async def completion_published(bus: Bus, job: jobs_pb2.TrainJob) -> bool:
    """Whether the stream holds a `training.completed` of this training (walks the subject's few events
    of that kind by sequence; creates no consumer)."""
    subject = event_nats_subject(job.tenant, job.subject_id, COMPLETED)
    sequence = 1
    while True:
        try:
            message = await bus.js.get_msg(EVENTS_STREAM, seq=sequence, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            return False
        if message.data:
            event = events_pb2.TrainingCompleted()
            event.ParseFromString(message.data)
            if event.training_id == job.training_id:
                return True
        sequence = int(message.seq or sequence) + 1


async def publish_completed_once(bus: Bus, job: jobs_pb2.TrainJob) -> None:
    if not await completion_published(bus, job):
        await publish_completed(bus, job)


async def publish_failed(bus: Bus, job: jobs_pb2.TrainJob, reason: str, cancelled: bool) -> None:
    event = events_pb2.TrainingFailed(
        tenant=job.tenant,
        subject_id=job.subject_id,
        training_id=job.training_id,
        reason=reason,
        cancelled=cancelled,
        at=now_timestamp(),
    )
    await bus.publish(
        event_nats_subject(job.tenant, job.subject_id, FAILED), event, msg_id=f"{job.training_id}.failed"
    )


async def purge_training_events(bus: Bus, tenant: str, subject_id: str) -> None:
    """Removes the subject's training events; after an erasure, the ones that raced past its purge."""
    await bus.js.purge_stream(EVENTS_STREAM, subject=event_nats_subject(tenant, subject_id, "training.>"))


__all__ = [
    "COMPLETED",
    "FAILED",
    "PROGRESS",
    "completion_published",
    "publish_completed",
    "publish_completed_once",
    "publish_failed",
    "purge_training_events",
]
