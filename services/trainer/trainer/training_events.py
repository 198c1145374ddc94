"""The trainer's domain events on `LIKENESS_EVENTS`: completion (exactly once), failure, and their removal.

`training.completed` carries the training id as `Nats-Msg-Id`, so a retried publish inside the stream's
duplicate window is stored once. A delivery that resumes a job another worker finished but did not get
to acknowledge may come later than that window, so it publishes only if the stream does not hold the event
(`Bus.publish_once`).
"""

from __future__ import annotations

from likeness.bus import EVENTS_STREAM, Bus, event_nats_subject
from likeness.timeutil import now_timestamp
from likeness.v1 import events_pb2, jobs_pb2

COMPLETED = "training.completed"
FAILED = "training.failed"
PROGRESS = "training.progress"


def _completed(job: jobs_pb2.TrainJob) -> tuple[str, events_pb2.TrainingCompleted, str]:
    """(NATS subject, event, `Nats-Msg-Id`) of the training's completion."""
    event = events_pb2.TrainingCompleted(
        tenant=job.tenant, subject_id=job.subject_id, training_id=job.training_id, at=now_timestamp()
    )
    return event_nats_subject(job.tenant, job.subject_id, COMPLETED), event, f"{job.training_id}.completed"


async def publish_completed(bus: Bus, job: jobs_pb2.TrainJob) -> None:
    nats_subject, event, msg_id = _completed(job)
    await bus.publish(nats_subject, event, msg_id=msg_id)


async def publish_completed_once(bus: Bus, job: jobs_pb2.TrainJob) -> None:
    """For a delivery of an already succeeded job: unless the stream holds the event already."""
    await bus.publish_once(*_completed(job))


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
    "publish_completed",
    "publish_completed_once",
    "publish_failed",
    "purge_training_events",
]
