"""The bus against a real NATS JetStream server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from nats.js.api import RetentionPolicy, StreamConfig
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from likeness.bus import (
    EVENTS_STREAM,
    Bus,
    WorkQueue,
    decode,
    event_nats_subject,
    kv_entries,
    kv_forget,
    kv_get,
    kv_keys,
    nats_servers,
)
from likeness.config import CommonSettings
from likeness.provisioning import ConsumerSpec
from likeness.v1 import events_pb2, jobs_pb2
from likeness_dev.testing import provision_for_test, provisioned_kv


@pytest.mark.parametrize(
    ("url", "servers"),
    [
        ("nats://a:4222", ["nats://a:4222"]),
        ("nats://a:1,nats://b:2, nats://c:3", ["nats://a:1", "nats://b:2", "nats://c:3"]),
        ("tls://u:p@a:1,tls://u:p@b:2,", ["tls://u:p@a:1", "tls://u:p@b:2"]),
    ],
    ids=["one", "a-cluster", "credentials-trailing-comma"],
)
def test_a_cluster_url_lists_every_server(url: str, servers: list[str]) -> None:
    assert nats_servers(url) == servers


class _LeaderlessSubscription:
    """A pull subscription whose stream has no leader (a JetStream cluster electing one)."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.fetches = 0

    async def fetch(self, batch: int, timeout: float) -> list[Any]:
        self.fetches += 1
        raise self.error


@pytest.mark.parametrize(
    "error",
    [nats.js.errors.ServiceUnavailableError(), nats.errors.NoRespondersError()],
    ids=["service-unavailable", "no-responders"],
)
async def test_a_worker_waits_out_a_queue_without_a_leader(error: Exception) -> None:
    subscription = _LeaderlessSubscription(error)
    queue = WorkQueue(subscription)  # type: ignore[arg-type]
    assert await queue.next(timeout=0.01) is None
    assert await queue.next(timeout=0.01) is None
    assert subscription.fetches == 2


@pytest.fixture
async def bus(settings: CommonSettings) -> AsyncIterator[Bus]:
    connected = await Bus.connect(settings.nats_url, "test")
    yield connected
    await connected.close()


def _subject_id() -> str:
    return f"sub_{uuid.uuid4().hex[:20]}"


async def test_msg_id_deduplicates_a_retried_publish(bus: Bus) -> None:
    # A private work-queue stream: the real job streams admit one consumer per filter, and a stack started
    # earlier in the session keeps its workers' durable consumers there.
    stream = f"TESTDEDUP{uuid.uuid4().hex[:8].upper()}"
    await bus.js.add_stream(
        StreamConfig(
            name=stream,
            subjects=[f"{stream.lower()}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=60,
        )
    )
    subject = f"{stream.lower()}.{_subject_id()}"
    job = jobs_pb2.TrainJob(training_id=f"trn_{uuid.uuid4().hex}", tenant="test", subject_id=_subject_id())
    try:
        for _ in range(3):
            await bus.publish(subject, job, msg_id=job.training_id)
        info = await bus.js.stream_info(stream)
        assert info.state.messages == 1
        await provision_for_test(
            bus.js, consumers=[ConsumerSpec(stream, "test-dedup", f"{stream.lower()}.>", pull=True)]
        )
        queue = await bus.work_queue(stream, "test-dedup")
        msg = await queue.next(timeout=2)
        assert msg is not None
        await msg.ack()
        assert decode(msg, jobs_pb2.TrainJob) == job
        assert await queue.next(timeout=0.5) is None
    finally:
        await bus.js.delete_stream(stream)


async def test_decode_checks_the_declared_type(bus: Bus) -> None:
    tenant, subject = "test", _subject_id()
    sub = await bus.js.subscribe(event_nats_subject(tenant, subject, ">"), stream=EVENTS_STREAM)
    await bus.publish(
        event_nats_subject(tenant, subject, "subject.opened"), events_pb2.SubjectOpened(tenant=tenant)
    )
    msg = await sub.next_msg(timeout=5)
    assert decode(msg, events_pb2.SubjectOpened).tenant == tenant
    with pytest.raises(ValueError, match="expected"):
        decode(msg, events_pb2.SubjectErased)
    await sub.unsubscribe()


async def test_trace_context_travels_in_headers(bus: Bus) -> None:
    trace.set_tracer_provider(TracerProvider())
    tenant, subject = "test", _subject_id()
    sub = await bus.js.subscribe(event_nats_subject(tenant, subject, ">"), stream=EVENTS_STREAM)
    with trace.get_tracer("test").start_as_current_span("publish") as span:
        await bus.publish(event_nats_subject(tenant, subject, "x"), events_pb2.SubjectOpened(tenant=tenant))
        trace_id = f"{span.get_span_context().trace_id:032x}"
    msg = await sub.next_msg(timeout=5)
    assert trace_id in (msg.headers or {}).get("traceparent", "")
    await sub.unsubscribe()


async def test_purging_a_subjects_events_leaves_others(bus: Bus) -> None:
    tenant, erased, kept = "test", _subject_id(), _subject_id()
    for subject in (erased, kept):
        for name in ("subject.opened", "photo.accepted"):
            await bus.publish(
                event_nats_subject(tenant, subject, name), events_pb2.SubjectOpened(tenant=tenant)
            )
    assert await bus.purge_subject_events(tenant, erased) == 2
    info = await bus.js.stream_info(EVENTS_STREAM, subjects_filter=f"evt.{tenant}.*.>")
    remaining = info.state.subjects or {}
    assert not any(erased in key for key in remaining)
    assert sum(count for key, count in remaining.items() if kept in key) == 2


async def test_holds_message_finds_a_message_by_its_msg_id_among_others_of_its_nats_subject(bus: Bus) -> None:
    tenant, subject = "test", _subject_id()
    nats_subject = event_nats_subject(tenant, subject, "training.completed")
    assert not await bus.holds_message(nats_subject, "trn_a.completed"), "nothing on the NATS subject yet"
    for training_id in ("trn_a", "trn_b"):
        event = events_pb2.TrainingCompleted(tenant=tenant, subject_id=subject, training_id=training_id)
        await bus.publish(nats_subject, event, msg_id=f"{training_id}.completed")
    elsewhere = event_nats_subject(tenant, subject, "render.completed")
    await bus.publish(elsewhere, events_pb2.RenderCompleted(), msg_id="trn_c.completed")
    assert await bus.holds_message(nats_subject, "trn_a.completed")
    assert await bus.holds_message(nats_subject, "trn_b.completed"), "found past the first message"
    assert not await bus.holds_message(nats_subject, "trn_c.completed"), "another NATS subject's message"


async def test_publish_once_publishes_only_what_the_stream_does_not_hold(bus: Bus) -> None:
    # A redelivered job may announce its completion after the duplicate window: `Nats-Msg-Id` no longer
    # dedups then, so the stream itself is asked. A private stream with a short window shows it.
    stream = f"TESTONCE{uuid.uuid4().hex[:8].upper()}"
    window = 0.5
    await bus.js.add_stream(
        StreamConfig(name=stream, subjects=[f"{stream.lower()}.>"], duplicate_window=window)
    )
    nats_subject = f"{stream.lower()}.{_subject_id()}"
    event = events_pb2.TrainingCompleted(training_id="trn_a")
    try:
        await bus.publish(nats_subject, event, msg_id="trn_a.completed")
        await asyncio.sleep(window * 3)  # past the window: a plain publish would be stored again
        await bus.publish_once(nats_subject, event, "trn_a.completed", stream=stream)
        await bus.publish_once(nats_subject, event, "trn_b.completed", stream=stream)
        msg_ids = []
        for sequence in (1, 2):
            message = await bus.js.get_msg(stream, seq=sequence)
            msg_ids.append((message.headers or {}).get("Nats-Msg-Id"))
        assert msg_ids == ["trn_a.completed", "trn_b.completed"]
        assert (await bus.js.stream_info(stream)).state.messages == 2
    finally:
        await bus.js.delete_stream(stream)


async def test_kv_compare_and_set_and_prefix_listing(bus: Bus) -> None:
    kv = await provisioned_kv(bus, f"test-{uuid.uuid4().hex[:8]}")
    record = events_pb2.SubjectOpened(tenant="a")
    revision = await kv.put("a.sub_1", record.SerializeToString())
    await kv.put("a.sub_2", record.SerializeToString())
    await kv.put("b.sub_3", record.SerializeToString())
    assert sorted(await kv_keys(kv, "a.")) == ["a.sub_1", "a.sub_2"]
    found = await kv_get(kv, "a.sub_1", events_pb2.SubjectOpened)
    assert found == (record, revision)
    await kv.update("a.sub_1", b"", last=revision)
    with pytest.raises(nats.js.errors.KeyWrongLastSequenceError):
        await kv.update("a.sub_1", b"", last=revision)
    await kv.purge("a.sub_2")
    # A purged key may still be listed (its purge marker is the subject's last entry); reading it says gone.
    assert set(await kv_keys(kv, "a.")) <= {"a.sub_1", "a.sub_2"}
    assert await kv_get(kv, "a.sub_2", events_pb2.SubjectOpened) is None


async def test_forgetting_keys_leaves_no_marker_that_names_them(bus: Bus) -> None:
    kv = await provisioned_kv(bus, f"test-{uuid.uuid4().hex[:8]}")
    await kv.put("a.sub_1.pho_1", b"x")
    await kv.put("a.sub_1.pho_2", b"x")
    await kv.delete("a.sub_1.pho_2")  # a delete marker: its NATS subject is the key
    await kv.put("a.sub_2.pho_3", b"x")
    await kv_forget(kv, "a.sub_1.>")
    assert await kv_keys(kv, "a.") == ["a.sub_2.pho_3"], "nothing of a.sub_1, markers included"
    assert await kv_get(kv, "a.sub_1.pho_1", events_pb2.SubjectOpened) is None
    await kv.purge("a.sub_2.pho_3")
    assert await kv_keys(kv, "a.") == ["a.sub_2.pho_3"], "a purge, by contrast, keeps a marker"


async def test_kv_entries_list_every_key_while_others_rewrite_them(bus: Bus) -> None:
    # Regression (two reaper replicas, one erasure record missing from the listing): a watch replay ends on
    # nats-py's end marker, and a key rewritten while it runs arrives after that marker. The old
    # watch-based listing missed keys in about one round of ten here; 40 rounds of a snapshot listing
    # must miss none, and every value read must be one that was written.
    kv = await provisioned_kv(bus, f"test-{uuid.uuid4().hex[:8]}")
    keys = [f"t.sub_{i:03d}" for i in range(200)]
    await asyncio.gather(*(kv.put(key, b"v0") for key in keys))
    stop = asyncio.Event()

    async def rewrite(seed: int) -> None:
        turn = 0
        while not stop.is_set():
            turn += 1
            await kv.put(keys[(seed * 53 + turn * 7) % len(keys)], f"v{turn}".encode())

    writers = [asyncio.create_task(rewrite(seed)) for seed in range(4)]
    try:
        for _ in range(40):
            listed = await kv_entries(kv, "t.")
            assert sorted(key for key, _, _ in listed) == keys
            assert all(value.startswith(b"v") and revision > 0 for _, value, revision in listed)
    finally:
        stop.set()
        await asyncio.gather(*writers)


async def test_kv_listing_sees_every_key_written_concurrently_before_it(bus: Bus) -> None:
    # nats-py's watch-based keys() can end its replay early and drop keys (nats.py#842); ours must not.
    kv = await provisioned_kv(bus, f"test-{uuid.uuid4().hex[:8]}")
    for round_ in range(5):
        written = [f"t.sub_{round_}_{i}" for i in range(60)]
        await asyncio.gather(*(kv.put(key, b"x") for key in written))
        listed = set(await kv_keys(kv, "t."))
        assert set(written) <= listed


async def test_durable_event_watch_sees_events_published_while_away(bus: Bus) -> None:
    tenant, subject = "test", _subject_id()
    await bus.publish(
        event_nats_subject(tenant, subject, "subject.erased"), events_pb2.SubjectErased(subject_id=subject)
    )
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def handler(msg: nats.aio.msg.Msg) -> None:
        event = decode(msg, events_pb2.SubjectErased)
        if event.subject_id == subject:
            await seen.put(event.subject_id)

    durable = f"t{uuid.uuid4().hex[:8]}"
    nats_subject = event_nats_subject(tenant, subject, "subject.erased")
    await provision_for_test(
        bus.js, consumers=[ConsumerSpec(EVENTS_STREAM, durable, nats_subject, pull=False)]
    )
    await bus.watch_events(nats_subject, handler, durable=durable)
    assert await asyncio.wait_for(seen.get(), timeout=5) == subject
