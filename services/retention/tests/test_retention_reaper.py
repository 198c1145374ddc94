"""The reaper with a test clock, against the real NATS, S3 and OpenBao: deadlines fire exactly when due,
schedules are the tenant's and stored with each subject, and replicas never double-delete or miss one."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from google.protobuf.message import Message

from likeness import ids
from likeness.bus import EVENTS_STREAM, event_nats_subject, subject_events_filter
from likeness.timeutil import ManualClock, from_timestamp, to_timestamp
from likeness.v1 import events_pb2, retention_pb2
from retention.deadlines import Deadline, DeadlineKind
from retention.service import RetentionServicer

DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
Schedule = retention_pb2.RetentionSchedule
SS = retention_pb2.SubjectStatus


async def deliver(servicer: RetentionServicer, name: str, event: Message, *, publish: bool = False) -> str:
    """Hands one domain event to the reaper as its consumer would (optionally also publishing it)."""
    tenant, subject_id = getattr(event, "tenant"), getattr(event, "subject_id")  # noqa: B009
    nats_subject = event_nats_subject(tenant, subject_id, name)
    if publish:
        await servicer.platform.bus.publish(nats_subject, event)
    await servicer.reaper.handle_event(
        tenant, subject_id, nats_subject, event.DESCRIPTOR.full_name, event.SerializeToString()
    )
    return nats_subject


async def make_subject_data(instances: Any, servicer: RetentionServicer, subject_id: str) -> dict[str, Any]:
    tenant = instances.tenant
    photo, training, render = ids.new_id("pho"), ids.new_id("trn"), ids.new_id("ren")
    put = instances.put_object
    keys = {
        "photo": {
            await put(servicer, tenant, subject_id, f"photos/{photo}", b"crop"),
            await put(servicer, tenant, subject_id, f"faces/{photo}", b"template"),
        },
        "model": {
            await put(servicer, tenant, subject_id, f"models/{training}/lora", b"lora"),
            await put(servicer, tenant, subject_id, f"models/{training}/ckpt-00000100", b"ckpt"),
        },
        "render": {await put(servicer, tenant, subject_id, f"renders/{render}/{ids.new_id('img')}", b"png")},
    }
    return {"photo_id": photo, "training_id": training, "render_id": render, "keys": keys}


async def test_deadlines_fire_exactly_when_due(instances: Any) -> None:
    """Through the real event consumer: photo, model and render deadlines, then the inactivity erasure."""
    clock = ManualClock()
    servicer = await instances.new(clock)
    tenant = instances.tenant
    await servicer.set_policy(
        tenant, Schedule(photos_days=2, models_days=5, renders_days=3, inactivity_days=10)
    )
    subject = await instances.open_subject(servicer, tenant)
    sid = subject.id
    t0 = clock.now()
    data = await make_subject_data(instances, servicer, sid)
    keys = data["keys"]

    await servicer.reaper.consume_events()
    bus = servicer.platform.bus
    at = to_timestamp(t0)
    later = to_timestamp(t0 + DAY)
    await bus.publish(
        event_nats_subject(tenant, sid, "photo.accepted"),
        events_pb2.PhotoAccepted(tenant=tenant, subject_id=sid, photo_id=data["photo_id"], at=at),
    )
    await bus.publish(
        event_nats_subject(tenant, sid, "training.completed"),
        events_pb2.TrainingCompleted(
            tenant=tenant, subject_id=sid, training_id=data["training_id"], at=later
        ),
    )
    await bus.publish(
        event_nats_subject(tenant, sid, "render.completed"),
        events_pb2.RenderCompleted(
            tenant=tenant, subject_id=sid, render_id=data["render_id"], image_count=1, at=later
        ),
    )

    async def scheduled() -> bool:
        found = await servicer.records.get_subject(tenant, sid)
        touched = found is not None and from_timestamp(found[0].last_activity_at) == t0 + DAY
        return touched and len(await servicer.reaper.deadlines.of_subject(tenant, sid)) == 3

    await instances.wait_for(scheduled, what="the events to schedule three deadlines")

    everything = keys["photo"] | keys["model"] | keys["render"]
    expected_after: list[tuple[datetime, set[str]]] = [
        (t0 + 2 * DAY - SECOND, everything),
        (t0 + 2 * DAY, keys["model"] | keys["render"]),  # photos: 2 days after upload
        (t0 + 4 * DAY - SECOND, keys["model"] | keys["render"]),
        (t0 + 4 * DAY, keys["model"]),  # renders: 3 days after the render
        (t0 + 6 * DAY - SECOND, keys["model"]),
        (t0 + 6 * DAY, set()),  # models: 5 days after training
    ]
    for moment, remaining in expected_after:
        clock.set(moment)
        await servicer.sweep()
        assert await instances.keys_under(servicer, tenant, sid) == remaining, f"at {moment - t0}"

    # The whole subject: 10 days after its last activity (the events of day 1), key included.
    clock.set(t0 + 11 * DAY - SECOND)
    assert (await servicer.sweep()).subjects_erased == 0
    clock.set(t0 + 11 * DAY)
    assert (await servicer.sweep()).subjects_erased == 1
    found = await servicer.records.get_subject(tenant, sid)
    assert found is not None
    erasure = await instances.wait_erased(servicer, tenant, found[0].erasure_id)
    assert erasure.cause == "retention.inactivity"
    assert not await asyncio.to_thread(servicer.platform.keys.exists, sid)
    assert await servicer.reaper.deadlines.of_subject(tenant, sid) == [] or all(
        d.kind == DeadlineKind.RESCAN for d, _ in await servicer.reaper.deadlines.of_subject(tenant, sid)
    )


async def test_photos_go_as_soon_as_training_succeeds_when_the_tenant_says_so(instances: Any) -> None:
    clock = ManualClock()
    servicer = await instances.new(clock)
    tenant = instances.tenant
    await servicer.set_policy(tenant, Schedule(photos_days=30, photos_deleted_after_training=True))
    sid = (await instances.open_subject(servicer, tenant)).id
    data = await make_subject_data(instances, servicer, sid)
    await deliver(
        servicer,
        "photo.accepted",
        events_pb2.PhotoAccepted(
            tenant=tenant, subject_id=sid, photo_id=data["photo_id"], at=to_timestamp(clock.now())
        ),
    )
    assert await instances.keys_under(servicer, tenant, sid) >= data["keys"]["photo"]

    clock.advance(timedelta(minutes=5))
    await deliver(
        servicer,
        "training.completed",
        events_pb2.TrainingCompleted(
            tenant=tenant, subject_id=sid, training_id=data["training_id"], at=to_timestamp(clock.now())
        ),
    )
    # No sweep, no clock change: the training's success itself deleted the photos.
    assert await instances.keys_under(servicer, tenant, sid) == data["keys"]["model"] | data["keys"]["render"]
    kinds = {d.kind for d, _ in await servicer.reaper.deadlines.of_subject(tenant, sid)}
    assert kinds == {DeadlineKind.MODEL}, "the photo's own deadline went with it"


async def test_a_failed_trainings_leftovers_go_at_once(instances: Any) -> None:
    clock = ManualClock()
    servicer = await instances.new(clock)
    tenant = instances.tenant
    sid = (await instances.open_subject(servicer, tenant)).id
    data = await make_subject_data(instances, servicer, sid)
    await deliver(
        servicer,
        "training.failed",
        events_pb2.TrainingFailed(
            tenant=tenant,
            subject_id=sid,
            training_id=data["training_id"],
            cancelled=True,
            at=to_timestamp(clock.now()),
        ),
    )
    assert await instances.keys_under(servicer, tenant, sid) == data["keys"]["photo"] | data["keys"]["render"]


async def test_the_hard_cap_wins_over_activity(instances: Any) -> None:
    clock = ManualClock()
    servicer = await instances.new(clock, activity_resolution_seconds=60)
    tenant = instances.tenant
    await servicer.set_policy(tenant, Schedule(inactivity_days=5000, photos_days=5000))
    subject = await instances.open_subject(servicer, tenant)
    assert subject.retention.inactivity_days == 3 * 365, "a tenant cannot go past the legal cap"
    t0 = from_timestamp(subject.created_at)
    assert t0 is not None
    clock.set(t0 + 1000 * DAY)
    photo = ids.new_id("pho")
    await deliver(
        servicer,
        "photo.accepted",
        events_pb2.PhotoAccepted(
            tenant=tenant, subject_id=subject.id, photo_id=photo, at=to_timestamp(clock.now())
        ),
    )
    (deadline, _) = (await servicer.reaper.deadlines.of_subject(tenant, subject.id))[0]
    assert deadline.due == t0 + 3 * 365 * DAY, "no deadline is later than the hard cap"

    clock.set(t0 + 3 * 365 * DAY - SECOND)
    assert (await servicer.sweep()).subjects_erased == 0
    clock.set(t0 + 3 * 365 * DAY)
    assert (await servicer.sweep()).subjects_erased == 1
    found = await servicer.records.get_subject(tenant, subject.id)
    assert found is not None
    erasure = await instances.wait_erased(servicer, tenant, found[0].erasure_id)
    assert erasure.cause == "retention.hard_cap"


async def test_schedules_are_the_tenants_and_stay_with_each_subject(instances: Any) -> None:
    servicer = await instances.new()
    tenant = instances.tenant
    schedule, chosen, text = await servicer.policy(tenant)
    assert not chosen
    assert schedule.photos_days == 30
    assert "service defaults" in text

    await servicer.set_policy(
        tenant, Schedule(photos_days=7, photos_deleted_after_training=True, renders_days=90)
    )
    first = await instances.open_subject(servicer, tenant)
    await servicer.set_policy(tenant, Schedule(photos_days=14))
    second = await instances.open_subject(servicer, tenant)

    assert (first.retention.photos_days, first.retention.photos_deleted_after_training) == (7, True)
    assert first.retention.renders_days == 90
    assert first.retention.models_days == 365, "zero means the default"
    assert (second.retention.photos_days, second.retention.photos_deleted_after_training) == (14, False)
    stored = await servicer.records.get_subject(tenant, first.id)
    assert stored is not None
    assert stored[0].retention.photos_days == 7, "a change applies to later subjects only"
    _, chosen, text = await servicer.policy(tenant)
    assert chosen
    assert "14 days after upload" in text
    assert "1095 days" in text
    with pytest.raises(ValueError, match="negative"):
        await servicer.set_policy(tenant, Schedule(models_days=-1))


async def test_late_events_of_an_erased_subject_are_purged_as_they_come(instances: Any) -> None:
    servicer = await instances.new()
    tenant = instances.tenant
    sid = (await instances.open_subject(servicer, tenant)).id
    erasure = (await servicer.eraser.request(tenant, sid, "request")).erasure
    assert erasure is not None
    await instances.wait_erased(servicer, tenant, erasure.id)

    late = events_pb2.TrainingProgress(tenant=tenant, subject_id=sid, training_id=ids.new_id("trn"), step=3)
    await deliver(servicer, "training.progress", late, publish=True)
    info = await servicer.platform.bus.js.stream_info(
        EVENTS_STREAM, subjects_filter=subject_events_filter(tenant, sid)
    )
    assert set((info.state.subjects or {}).keys()) == {event_nats_subject(tenant, sid, "subject.erased")}


async def test_two_replicas_never_double_delete_nor_miss_a_deadline(instances: Any) -> None:
    clock = ManualClock()
    a = await instances.new(clock, holder="replica-a")
    b = await instances.new(clock, holder="replica-b")
    tenant = instances.tenant
    await a.set_policy(tenant, Schedule(photos_days=1, inactivity_days=2))
    subjects = [(await instances.open_subject(a if n % 2 else b, tenant)).id for n in range(4)]
    photo_keys: set[str] = set()
    for n, sid in enumerate(subjects):
        for _ in range(5):
            photo = ids.new_id("pho")
            photo_keys.add(await instances.put_object(a, tenant, sid, f"photos/{photo}", b"crop"))
            event = events_pb2.PhotoAccepted(
                tenant=tenant, subject_id=sid, photo_id=photo, at=to_timestamp(clock.now())
            )
            await deliver(a if n % 2 else b, "photo.accepted", event)
            await deliver(b if n % 2 else a, "photo.accepted", event)  # a redelivery changes nothing
    assert len(await a.reaper.deadlines.all()) == 20

    clock.advance(DAY)
    await asyncio.gather(a.reaper.fire_due(), b.reaper.fire_due(), a.reaper.fire_due(), b.reaper.fire_due())
    fired_a, fired_b = set(a.reaper.fired), set(b.reaper.fired)
    assert not fired_a & fired_b, "a deadline was carried out by both replicas"
    assert len(a.reaper.fired) + len(b.reaper.fired) == 20 == len(fired_a | fired_b), "one was missed"
    assert await a.reaper.deadlines.all() == []
    for sid in subjects:
        assert await instances.keys_under(a, tenant, sid) == set()

    # Whole subjects: both replicas sweep at once; each subject is erased exactly once.
    clock.advance(DAY)
    results = await asyncio.gather(a.sweep(), b.sweep())
    assert sum(r.subjects_erased for r in results) == 4
    erasures = await a.records.all_erasures()
    assert sorted(e.subject_hmac for e in erasures) == sorted(
        a.eraser.subject_hmac(tenant, s) for s in subjects
    )
    for erasure in erasures:
        await instances.wait_erased(a, tenant, erasure.id)
    await asyncio.gather(a.eraser.wait_all(), b.eraser.wait_all())
    for sid in subjects:
        found = await a.records.get_subject(tenant, sid)
        assert found is not None
        assert found[0].status == SS.SUBJECT_STATUS_ERASED


async def test_a_claim_left_by_a_dead_replica_is_taken_over(instances: Any) -> None:
    clock = ManualClock()
    a = await instances.new(clock, holder="replica-a", lease_seconds=60)
    b = await instances.new(clock, holder="replica-b", lease_seconds=60)
    tenant = instances.tenant
    sid = (await instances.open_subject(a, tenant)).id
    photo = ids.new_id("pho")
    key = await instances.put_object(a, tenant, sid, f"photos/{photo}", b"crop")
    deadline = Deadline(tenant, sid, DeadlineKind.PHOTO, photo, due=clock.now())
    await a.reaper.deadlines.schedule(deadline)

    claimed = await a.reaper.deadlines.claim(deadline.key, "replica-a", clock.now(), timedelta(seconds=60))
    assert claimed is not None  # ... and replica A dies holding it
    assert await b.reaper.fire_due() == [], "a live claim is respected"
    assert key in await instances.keys_under(b, tenant, sid)
    clock.advance(timedelta(seconds=61))
    assert await b.reaper.fire_due() == [deadline.key], "an expired claim is taken over"
    assert await instances.keys_under(b, tenant, sid) == set()


async def test_a_write_landing_after_the_erasure_is_rescanned_away(instances: Any) -> None:
    """A worker that had its data key before the key was destroyed may still finish an upload (noise, but
    it must go) and publish a last event; the rescan scheduled by the erasure removes both."""
    clock = ManualClock()
    servicer = await instances.new(clock, erasure_rescan_seconds=10)
    tenant = instances.tenant
    sid = (await instances.open_subject(servicer, tenant)).id
    erasure = (await servicer.eraser.request(tenant, sid, "request")).erasure
    assert erasure is not None
    await instances.wait_erased(servicer, tenant, erasure.id)

    late_key = f"t/{tenant}/s/{sid}/renders/{ids.new_id('ren')}/{ids.new_id('img')}"
    await asyncio.to_thread(servicer.platform.store.put_bytes, late_key, b"an envelope under a destroyed key")
    late_event = events_pb2.RenderFailed(tenant=tenant, subject_id=sid, render_id=ids.new_id("ren"))
    await servicer.platform.bus.publish(event_nats_subject(tenant, sid, "render.failed"), late_event)

    clock.advance(9 * SECOND)
    assert await servicer.reaper.fire_due() == []
    assert await instances.keys_under(servicer, tenant, sid) == {late_key}
    clock.advance(SECOND)
    assert len(await servicer.reaper.fire_due()) == 1
    assert await instances.keys_under(servicer, tenant, sid) == set()
    info = await servicer.platform.bus.js.stream_info(
        EVENTS_STREAM, subjects_filter=subject_events_filter(tenant, sid)
    )
    assert set((info.state.subjects or {}).keys()) == {event_nats_subject(tenant, sid, "subject.erased")}
    assert await servicer.reaper.deadlines.of_subject(tenant, sid) == []
