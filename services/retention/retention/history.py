"""A subject's event history on LIKENESS_EVENTS: what is left of it, and purging what came late.

Erasure purges `evt.<tenant>.<subject>.>` and then announces `subject.erased`, which stays in the stream
(ids only) so that services that were down still learn of the erasure from their durable consumers.
Events a worker publishes after the purge (a last progress report, a cancellation) are purged as they come.
"""

from __future__ import annotations

from nats.js import JetStreamContext

from likeness.bus import EVENTS_STREAM, subject_events_filter

ERASED_EVENT = "subject.erased"


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
