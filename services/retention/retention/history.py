"""A subject's event history on LIKENESS_EVENTS: what is left of it, purging what came late, and
forgetting the erasure notice once every service has acted on it.

Erasure purges `evt.<tenant>.<subject>.>` and then announces `subject.erased`. Each service that holds
records of the person (`likeness.provisioning.ERASURE_PURGERS`) needs the subject id to purge them, so the
notice names it (in its NATS subject and payload) and stays in the stream while a service may still be
down: its durable consumer gets it on return. Once every one of those consumers has acknowledged it, the
notice is purged too (`forget_erasure_notice`, at the erasure's rescan and on every full sweep), so nothing
naming the person outlives the erasure on the bus; a notice a consumer never acknowledges goes after
`erasure_notice_max_hours` anyway, which bounds how long a subject id can stay in clear.
Events a worker publishes after the purge (a last progress report, a cancellation) are purged as they come.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import nats.js.errors
from nats.js import JetStreamContext

from likeness.bus import (
    EVENTS_STREAM,
    RENDER_STREAM,
    TRAIN_STREAM,
    event_nats_subject,
    job_nats_subject,
    subject_events_filter,
)
from likeness.timeutil import from_timestamp
from likeness.v1 import events_pb2

log = logging.getLogger(__name__)

ERASED_EVENT = "subject.erased"
#: Every erasure notice on the stream (`evt.<tenant>.<subject>.subject.erased`).
ERASURE_NOTICES = "evt.*.*." + ERASED_EVENT


def is_erasure_notice(nats_subject: str) -> bool:
    return nats_subject.endswith("." + ERASED_EVENT)


async def subject_event_counts(js: JetStreamContext, tenant: str, subject_id: str) -> dict[str, int]:
    """Messages left in the stream per NATS subject of this person."""
    info = await js.stream_info(EVENTS_STREAM, subjects_filter=subject_events_filter(tenant, subject_id))
    return dict(info.state.subjects or {})


async def purge_late_events(js: JetStreamContext, tenant: str, subject_id: str) -> int:
    """Purges every event of the subject except the erasure notice; returns how many went."""
    purged = 0
    for nats_subject, count in (await subject_event_counts(js, tenant, subject_id)).items():
        if not is_erasure_notice(nats_subject):
            await js.purge_stream(EVENTS_STREAM, subject=nats_subject)
            purged += count
    return purged


async def purge_one_subject(js: JetStreamContext, nats_subject: str) -> None:
    if not is_erasure_notice(nats_subject):
        await js.purge_stream(EVENTS_STREAM, subject=nats_subject)


async def purge_queued_jobs(js: JetStreamContext, tenant: str, subject_id: str) -> None:
    """Removes the subject's jobs still queued (`job.train.<tenant>.<subject>`,
    `job.render.<tenant>.<priority>.<subject>`): with the workers scaled to zero nobody would take them,
    and their NATS subject names the person. A worker already running one is cancelled by the erasure
    notice; its late ack of a purged message changes nothing."""
    await js.purge_stream(TRAIN_STREAM, subject=job_nats_subject("train", tenant, subject_id))
    await js.purge_stream(RENDER_STREAM, subject=job_nats_subject("render", tenant, subject_id, "*"))


async def acknowledged_by_all(js: JetStreamContext, sequence: int, consumers: Sequence[str]) -> bool:
    """Whether every one of `consumers` (durable, explicit ack) has acknowledged the message `sequence`.

    A consumer that does not exist is waiting for nothing (a deployment without that service, or a test
    instance); one that exists but has not reached the message yet keeps it.
    """
    for name in consumers:
        try:
            info = await js.consumer_info(EVENTS_STREAM, name)
        except nats.js.errors.NotFoundError:
            continue
        if (info.ack_floor.stream_seq if info.ack_floor else 0) < sequence:
            return False
    return True


async def forget_erasure_notice(
    js: JetStreamContext,
    tenant: str,
    subject_id: str,
    consumers: Sequence[str],
    now: datetime,
    max_age: timedelta,
) -> bool:
    """Purges the subject's erasure notice once every consumer acknowledged it (or it is older than
    `max_age`); True when no notice is left."""
    nats_subject = event_nats_subject(tenant, subject_id, ERASED_EVENT)
    try:
        notice = await js.get_last_msg(EVENTS_STREAM, nats_subject)
    except nats.js.errors.NotFoundError:
        return True
    if not await acknowledged_by_all(js, notice.seq or 0, consumers):
        announced = from_timestamp(events_pb2.SubjectErased.FromString(notice.data or b"").at)
        if announced is None or now - announced < max_age:
            return False
        log.warning("erasure notice never acknowledged by every service; forgotten at its age limit")
    await js.purge_stream(EVENTS_STREAM, subject=nats_subject)
    return True


async def forget_acknowledged_notices(
    js: JetStreamContext, consumers: Sequence[str], now: datetime, max_age: timedelta
) -> int:
    """One pass over every erasure notice on the stream; returns how many were forgotten."""
    info = await js.stream_info(EVENTS_STREAM, subjects_filter=ERASURE_NOTICES)
    forgotten = 0
    for nats_subject in info.state.subjects or {}:
        _, tenant, subject_id, *_ = nats_subject.split(".")
        forgotten += await forget_erasure_notice(js, tenant, subject_id, consumers, now, max_age)
    return forgotten
