"""What retention keeps after an erasure names the subject only as a keyed HMAC or a salted hash (issue 16,
item 6): every message of its KV buckets (keys, markers and values), the erasure record, the receipt; the
erasure notice goes once every service acknowledged it. Real NATS, S3 and OpenBao."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import nats.js.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from likeness import ids, receipts
from likeness.bus import EVENTS_STREAM, TRAIN_STREAM, event_nats_subject, job_nats_subject
from likeness.provisioning import RETENTION_BUCKETS
from likeness.timeutil import ManualClock, to_timestamp
from likeness.v1 import events_pb2, retention_pb2
from likeness.vault_transit import key_name
from likeness_dev.leaks import scan_streams
from retention import history
from retention.deadlines import Deadline, DeadlineKind
from retention.records import tombstone_key

SS = retention_pb2.SubjectStatus


async def test_after_erasure_no_retention_record_names_the_subject(instances: Any) -> None:
    clock = ManualClock()
    servicer = await instances.new(clock)
    tenant = instances.tenant
    sid = (await instances.open_subject(servicer, tenant)).id
    photo = ids.new_id("pho")
    await instances.put_object(servicer, tenant, sid, f"photos/{photo}", b"crop")
    # A deadline carried out before the erasure: its delete marker is keyed `<tenant>.<subject>...`.
    done = await servicer.reaper.deadlines.schedule(
        Deadline(tenant, sid, DeadlineKind.PHOTO, photo, due=clock.now())
    )
    assert await servicer.reaper.execute(done.key)
    # A training still queued (its workers scaled to zero, say): its NATS subject names the subject.
    queued = await servicer.platform.bus.js.publish(job_nats_subject("train", tenant, sid), b"job")
    streams = [f"KV_{instances.prefix}{name}" for name in RETENTION_BUCKETS]
    before, _ = await scan_streams(servicer.platform.bus.js, {"the subject id": sid}, streams)
    assert before, "the scan must see the live subject (else it proves nothing)"

    requested = await servicer.eraser.request(tenant, sid, "request")
    assert requested.erasure is not None
    erasure = await instances.wait_erased(servicer, tenant, requested.erasure.id)
    clock.advance(timedelta(seconds=servicer.settings.erasure_rescan_seconds + 1))
    assert await servicer.reaper.fire_due(), "the rescan ran"

    found, read = await scan_streams(servicer.platform.bus.js, {"the subject id": sid}, streams)
    assert read > 0
    assert found == [], [str(finding) for finding in found]
    with pytest.raises(nats.js.errors.NotFoundError):
        await servicer.platform.bus.js.get_msg(TRAIN_STREAM, queued.seq)
    raw = await servicer.receipt(tenant, erasure.id)
    assert raw is not None
    assert sid.encode() not in raw
    assert erasure.key_name == ""
    assert sid not in str(erasure)

    # The subject still reads as erased (not unknown), from the tombstone under its keyed HMAC.
    erased = await servicer.records.get_subject(tenant, sid)
    assert erased is not None
    assert erased[0].status == SS.SUBJECT_STATUS_ERASED
    assert erased[0].erasure_id == erasure.id
    tombstone = await servicer.records.get_tombstone(tenant, erasure.subject_hmac)
    assert tombstone is not None
    assert tombstone[0].id == ""
    assert tombstone_key(tenant, erasure.subject_hmac) == f"{tenant}.erased.{erasure.subject_hmac}"
    # ... and erasing it again answers with the same erasure (what a retried DELETE needs), salt-less.
    again = await servicer.eraser.request(tenant, sid, "request")
    assert again.erasure is not None
    assert again.erasure.id == erasure.id
    assert again.receipt_salt == ""
    keys = receipts.load_public_keys(json.dumps(servicer.receipt_keys()))
    facts = receipts.verify_receipt_text(raw, keys)
    assert receipts.names_subject(facts, sid, requested.receipt_salt)


@pytest.fixture
async def notice_consumer(instances: Any) -> Any:
    """A durable consumer of the test tenant's erasure notices, standing for a service that purges."""
    servicer = await instances.new()
    js = servicer.platform.bus.js
    name = f"{instances.prefix}purger"
    config = ConsumerConfig(
        durable_name=name,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=event_nats_subject(instances.tenant, "*", history.ERASED_EVENT),
    )
    await js.add_consumer(EVENTS_STREAM, config)
    subscription = await js.pull_subscribe_bind(durable=name, stream=EVENTS_STREAM)
    try:
        yield servicer, name, subscription
    finally:
        await subscription.unsubscribe()
        await js.delete_consumer(EVENTS_STREAM, name)


async def test_the_erasure_notice_is_forgotten_once_every_purger_acknowledged_it(
    instances: Any, notice_consumer: Any
) -> None:
    servicer, name, subscription = notice_consumer
    js = servicer.platform.bus.js
    tenant, sid = instances.tenant, ids.new_id("sub")
    now = servicer.clock.now()
    notice = event_nats_subject(tenant, sid, history.ERASED_EVENT)
    event = events_pb2.SubjectErased(tenant=tenant, subject_id=sid, erasure_id="era_x", at=to_timestamp(now))
    await servicer.platform.bus.publish(notice, event)
    max_age = timedelta(hours=1)

    async def kept() -> bool:
        try:
            await js.get_last_msg(EVENTS_STREAM, notice)
        except nats.js.errors.NotFoundError:
            return False
        return True

    [delivered] = await subscription.fetch(1, timeout=10)
    assert not await history.forget_erasure_notice(js, tenant, sid, [name], now, max_age)
    assert await kept(), "kept while a purger has not acknowledged it"
    await delivered.ack_sync()
    assert await history.forget_erasure_notice(js, tenant, sid, [name, "no-such-consumer"], now, max_age)
    assert not await kept(), "forgotten once every purger acknowledged it"

    # One a purger never acknowledges is forgotten at its age limit.
    await servicer.platform.bus.publish(notice, event)
    await subscription.fetch(1, timeout=10)
    assert not await history.forget_erasure_notice(js, tenant, sid, [name], now, max_age)
    assert await history.forget_erasure_notice(js, tenant, sid, [name], now + max_age, max_age)
    assert not await kept()


async def test_records_of_earlier_erasures_stop_naming_the_subject(instances: Any) -> None:
    """After an upgrade: a tombstone under the subject id, a completed erasure naming the key and a deadline
    marker, as the earlier code left them, are concealed by the sweep and the start-up pass."""
    clock = ManualClock()
    servicer = await instances.new(clock)
    tenant, sid, erasure_id = instances.tenant, ids.new_id("sub"), ids.new_id("era")
    old_tombstone = retention_pb2.Subject(
        tenant=tenant, id=sid, status=SS.SUBJECT_STATUS_ERASED, erasure_id=erasure_id
    )
    await servicer.records.subjects.put(f"{tenant}.{sid}", old_tombstone.SerializeToString())
    now = to_timestamp(clock.now())
    await servicer.records.put_erasure(
        retention_pb2.Erasure(
            id=erasure_id,
            tenant=tenant,
            subject_hmac=servicer.eraser.subject_hmac(tenant, sid),
            status=retention_pb2.ErasureStatus.ERASURE_STATUS_COMPLETED,
            key_name=key_name(sid),
            requested_at=now,
            key_destroyed_at=now,
            completed_at=now,
            backups_expire_by=now,
        )
    )
    done = Deadline(tenant, sid, DeadlineKind.PHOTO, ids.new_id("pho"), due=clock.now())
    await servicer.records.deadlines.put(done.key, done.to_json())
    await servicer.records.deadlines.delete(done.key)
    streams = [f"KV_{instances.prefix}{name}" for name in RETENTION_BUCKETS]
    before, _ = await scan_streams(servicer.platform.bus.js, {"the subject id": sid}, streams)
    assert len(before) >= 3

    await servicer.reaper.sweep()
    await servicer.resume_unfinished_erasures()

    found, _ = await scan_streams(servicer.platform.bus.js, {"the subject id": sid}, streams)
    assert found == [], [str(finding) for finding in found]
    erased = await servicer.records.get_subject(tenant, sid)
    assert erased is not None
    assert (erased[0].status, erased[0].erasure_id) == (SS.SUBJECT_STATUS_ERASED, erasure_id)
    confirmed = await servicer.records.erasure_with_subject(tenant, erasure_id)
    assert confirmed is not None
    assert confirmed[0].key_name == ""
    assert confirmed[0].subject_commitment
    raw = await servicer.receipt(tenant, erasure_id)
    assert raw is not None
    assert sid.encode() not in raw
