"""NATS JetStream: the domain event stream, work queues, KV buckets, trace context in headers.

Services only bind: streams, buckets and durable consumers are provisioned by `likeness bootstrap`
(`likeness.provisioning`), and one that is missing is a startup error (`NotProvisioned`) that says so.
Each process connects as its own NATS user, with a reply inbox of its own (`_INBOX.<user>`), and may do
only what that user's permissions allow (`likeness.access_policies`).

Words: a *subject* is a person (the domain's word); what NATS routes on is a *NATS subject*, and every name
here that means the latter says so (`event_nats_subject`, `nats_subject=`). NATS subjects carry ids only
(`evt.<tenant>.<subject_id>.<name>`, `job.train.<tenant>.<subject_id>`,
`job.render.<tenant>.<priority>.<subject_id>`); payloads are protobuf messages
whose type is named in the `Likeness-Type` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.kv import KeyValue
from opentelemetry import propagate

from likeness.config import NatsCredentials
from likeness.provisioning import AUDIT_STREAM as AUDIT_STREAM
from likeness.provisioning import EVENTS_STREAM as EVENTS_STREAM
from likeness.provisioning import RENDER_STREAM as RENDER_STREAM
from likeness.provisioning import TRAIN_STREAM as TRAIN_STREAM
from likeness.provisioning import inbox_prefix

# The stream names above are declared with what bootstrap provisions, and re-exported for the bus's users.
log = logging.getLogger(__name__)

TYPE_HEADER = "Likeness-Type"
MSG_ID_HEADER = "Nats-Msg-Id"

M = TypeVar("M", bound=Message)


def event_nats_subject(tenant: str, subject_id: str, name: str) -> str:
    return f"evt.{tenant}.{subject_id}.{name}"


def subject_events_filter(tenant: str, subject_id: str) -> str:
    return f"evt.{tenant}.{subject_id}.>"


def job_nats_subject(kind: str, tenant: str, subject_id: str, priority: str | None = None) -> str:
    """`job.train.<tenant>.<subject_id>`; renders carry their priority: `job.render.<tenant>.<priority>.<id>`
    (the tenant's queues, `likeness.provisioning.TenantQueues`). `priority="*"` is a filter of every one."""
    if priority is not None:
        return f"job.{kind}.{tenant}.{priority}.{subject_id}"
    return f"job.{kind}.{tenant}.{subject_id}"


def subject_erased_filter() -> str:
    return "evt.*.*.subject.erased"


def audit_nats_subject(tenant: str, pseudonym: str, action: str) -> str:
    """`audit.<tenant>.<pseudonym or _>.<action with _ for .>` (`likeness.audit`)."""
    return f"audit.{tenant}.{pseudonym}.{action.replace('.', '_')}"


def audit_log_filter(tenant: str, pseudonym: str = "*") -> str:
    """The NATS filter of one person's processing log (or, with `*`, of a tenant's whole trail)."""
    return f"audit.{tenant}.{pseudonym}.*"


def message_type(message: Message) -> str:
    return message.DESCRIPTOR.full_name


def decode(msg: Msg, cls: type[M]) -> M:
    expected = cls.DESCRIPTOR.full_name
    actual = (msg.headers or {}).get(TYPE_HEADER)
    if actual != expected:
        raise ValueError(f"expected {expected}, got {actual}")
    message = cls()
    message.ParseFromString(msg.data)
    return message


def trace_headers() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


class NotProvisioned(RuntimeError):
    """A stream, bucket or consumer this process binds to does not exist: `likeness bootstrap` makes them."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(
            f"NATS {kind} {name!r} does not exist: services never create it; run `likeness bootstrap` "
            "(the chart's bootstrap Job) first"
        )


async def report_nats_error(error: Exception) -> None:
    """nats-py's error callback: a refusal by nats-server's permissions is logged as one (naming only the
    NATS subject's first token: the rest may hold ids), anything else as a connection problem."""
    text = str(error)
    if "permissions violation" in text.lower():
        operation = "subscribe" if "subscription" in text.lower() else "publish"
        quoted = text.split('"')
        root = quoted[1].split(".")[0] if len(quoted) > 1 else ""
        log.error(
            "NATS refused this user the operation (permissions violation)",
            extra={"operation": operation, "nats_subject_root": root},
        )
        return
    log.warning("NATS connection problem", extra={"error": type(error).__name__})


def nats_servers(url: str) -> list[str]:
    """The servers of `LIKENESS_NATS_URL`: one URL, or a JetStream cluster's as a comma-separated list
    (`nats://a:4222,nats://b:4222,...`), so a process still connects when the first one is down."""
    return [server.strip() for server in url.split(",") if server.strip()]


def connect_options(credentials: NatsCredentials | None = None) -> dict[str, Any]:
    """nats-py connect options every process uses (reconnecting forever), with its user when given."""
    options: dict[str, Any] = {
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "connect_timeout": 5,
        "allow_reconnect": True,
        "drain_timeout": 10,
        "error_cb": report_nats_error,
    }
    if credentials is not None and credentials.user:
        options |= {
            "user": credentials.user,
            "password": credentials.password,
            "inbox_prefix": inbox_prefix(credentials.user),
        }
    return options


class Bus:
    """One NATS connection per process, its JetStream context and the KV buckets it uses."""

    def __init__(self, nc: NATS, js: JetStreamContext) -> None:
        self.nc = nc
        self.js = js
        self._kv: dict[str, KeyValue] = {}
        self._pull_subscriptions: list[JetStreamContext.PullSubscription] = []

    @classmethod
    async def connect(cls, url: str, name: str, credentials: NatsCredentials | None = None) -> Bus:
        """Connects as `credentials.user` when given (else as the URL says: tests use an admin URL)."""
        nc = await nats.connect(nats_servers(url), name=name, **connect_options(credentials))
        return cls(nc, nc.jetstream())

    async def kv(self, bucket: str) -> KeyValue:
        """Binds a provisioned bucket (`NotProvisioned` if it is missing)."""
        if bucket not in self._kv:
            try:
                self._kv[bucket] = await self.js.key_value(bucket)
            except nats.js.errors.BucketNotFoundError:
                raise NotProvisioned("KV bucket", bucket) from None
        return self._kv[bucket]

    async def require_consumer(self, stream: str, durable: str) -> None:
        """`NotProvisioned` unless the durable consumer exists (binding never creates one)."""
        try:
            await self.js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            raise NotProvisioned("consumer", f"{stream}/{durable}") from None

    async def publish(
        self,
        nats_subject: str,
        message: Message,
        msg_id: str | None = None,
        expect: Mapping[str, str] | None = None,
    ) -> None:
        """Publishes to the stream that stores `nats_subject`; `expect`: JetStream's expectation headers
        (such as a quota `Fence`), which the server checks before it stores the message."""
        headers = {TYPE_HEADER: message_type(message), **trace_headers(), **(expect or {})}
        if msg_id is not None:
            headers[MSG_ID_HEADER] = msg_id
        await self.js.publish(nats_subject, message.SerializeToString(), headers=headers)

    async def holds_message(self, nats_subject: str, msg_id: str, stream: str = EVENTS_STREAM) -> bool:
        """Whether `stream` holds the message published on `nats_subject` with this `Nats-Msg-Id`.

        Walks that NATS subject's messages by sequence (one get each, no consumer): meant for a subject with
        few messages, such as one kind of event of one person.
        """
        sequence = 1
        while True:
            try:
                message = await self.js.get_msg(stream, seq=sequence, subject=nats_subject, next=True)
            except nats.js.errors.NotFoundError:
                return False
            if (message.headers or {}).get(MSG_ID_HEADER) == msg_id:
                return True
            sequence = int(message.seq or sequence) + 1

    async def publish_once(
        self, nats_subject: str, message: Message, msg_id: str, stream: str = EVENTS_STREAM
    ) -> None:
        """Publishes unless `stream` (the one storing `nats_subject`) already holds the message.

        `Nats-Msg-Id` alone stores a retried publish once only inside the stream's duplicate window; this
        also holds for a publish that comes later, such as a redelivered job announcing the completion an
        earlier delivery may or may not have announced before it died.
        """
        if not await self.holds_message(nats_subject, msg_id, stream):
            await self.publish(nats_subject, message, msg_id=msg_id)

    async def purge_subject_events(self, tenant: str, subject_id: str) -> int:
        info = await self.js.stream_info(EVENTS_STREAM)
        before = info.state.messages
        await self.js.purge_stream(EVENTS_STREAM, subject=subject_events_filter(tenant, subject_id))
        after = (await self.js.stream_info(EVENTS_STREAM)).state.messages
        return max(0, before - after)

    async def work_queue(
        self, stream: str, durable: str, ack_wait: float | None = None, max_deliver: int | None = None
    ) -> WorkQueue:
        """Binds the provisioned pull consumer of a work queue. Its AckWait and MaxDeliver are the
        consumer's own (`QueueWorker` tunes them at start); `ack_wait` and `max_deliver` are accepted for
        callers that still pass them and change nothing."""
        del ack_wait, max_deliver
        await self.require_consumer(stream, durable)
        subscription = await self.js.pull_subscribe_bind(durable=durable, stream=stream)
        self._pull_subscriptions.append(subscription)
        return WorkQueue(subscription)

    async def watch_events(
        self, filter_subject: str, handler: Callable[[Msg], Awaitable[None]], durable: str | None = None
    ) -> None:
        """Delivers events matching the filter to `handler`.

        With `durable` (a provisioned consumer, `likeness.provisioning`), replicas of one service share it:
        each event is handled once, also the ones published while the service was down, and a failing
        handler leaves the event for redelivery. Without it, every process gets its own copy of new events
        (workers cancelling their own jobs) through a short-lived consumer without acks, named so that its
        filter is part of the request's NATS subject, which is what its user's permissions allow.
        """

        async def on_message(msg: Msg) -> None:
            try:
                await handler(msg)
            except Exception:
                log.exception("event handler failed; will be redelivered")
                with contextlib.suppress(nats.errors.Error):
                    await msg.nak(delay=1.0)
                return
            with contextlib.suppress(nats.errors.Error):
                await msg.ack()

        async def on_new_event(msg: Msg) -> None:
            try:
                await handler(msg)
            except Exception:
                log.exception("event handler failed")

        if durable is not None:
            await self.require_consumer(EVENTS_STREAM, durable)
            await self.js.subscribe(
                filter_subject,
                queue=durable,
                durable=durable,
                stream=EVENTS_STREAM,
                cb=on_message,
                manual_ack=True,
            )
            return
        config = ConsumerConfig(name=f"watch-{uuid.uuid4().hex}", ack_policy=AckPolicy.NONE)
        await self.js.subscribe(
            filter_subject,
            stream=EVENTS_STREAM,
            cb=on_new_event,
            deliver_policy=DeliverPolicy.NEW,
            manual_ack=True,
            inactive_threshold=60.0,
            config=config,
        )

    def is_connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def close(self) -> None:
        """Drains: finishes in-flight callbacks and flushes publishes before closing (used on SIGTERM)."""
        if self.nc.is_closed:
            return
        # A pull subscription never drains by itself (nothing is in flight on it between fetches), so it
        # is closed first; otherwise drain() waits out its whole timeout.
        for subscription in self._pull_subscriptions:
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await subscription.unsubscribe()
        with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
            await self.nc.drain()


#: How long a worker waits before fetching again from a work queue that had no leader.
UNAVAILABLE_PAUSE_SECONDS = 0.5


class WorkQueue:
    def __init__(self, subscription: JetStreamContext.PullSubscription) -> None:
        self._subscription = subscription

    async def next(self, timeout: float = 5.0) -> Msg | None:
        try:
            messages = await self._subscription.fetch(1, timeout=timeout)
        except (TimeoutError, nats.errors.TimeoutError):
            return None
        except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError):
            # No leader for the stream or its consumer yet: on a JetStream cluster, for the seconds after
            # the leader's server died. The worker waits and asks again instead of dying with the error.
            log.warning("work queue without a leader; asking again")
            await asyncio.sleep(min(timeout, UNAVAILABLE_PAUSE_SECONDS))
            return None
        return messages[0] if messages else None

    async def messages(self, stop: asyncio.Event, timeout: float = 2.0) -> AsyncIterator[Msg]:
        while not stop.is_set():
            msg = await self.next(timeout)
            if msg is not None:
                yield msg


KV_LIST_TIMEOUT_SECONDS = 10.0
#: Reads in flight at once when a listing reads every key it found (see `kv_entries`).
KV_READ_CONCURRENCY = 64


async def kv_get_bytes(kv: KeyValue, key: str) -> tuple[bytes, int] | None:
    """The raw value and its revision (for compare-and-set), or None when absent or deleted."""
    try:
        entry = await kv.get(key)
    except nats.js.errors.KeyNotFoundError:
        return None
    if not entry.value:
        return None
    return entry.value, int(entry.revision or 0)


async def kv_get(kv: KeyValue, key: str, cls: type[M]) -> tuple[M, int] | None:
    """The record and its revision (for compare-and-set), or None."""
    found = await kv_get_bytes(kv, key)
    if found is None:
        return None
    message = cls()
    message.ParseFromString(found[0])
    return message, found[1]


async def kv_entries(kv: KeyValue, prefix: str = "") -> list[tuple[str, bytes, int]]:
    """(key, value, revision) of every live key under `prefix`: the keys of one consistent snapshot
    (`kv_keys`), each then read, `KV_READ_CONCURRENCY` at a time.

    Never a `watch()` replay: a key rewritten while the replay runs is delivered after nats-py's
    end-of-replay marker, so a listing that stops at the marker misses it (two reaper replicas writing
    erasure records lost one that way). A key deleted between the snapshot and its read is left out.
    """
    keys = await kv_keys(kv, prefix)
    entries: list[tuple[str, bytes, int]] = []
    for start in range(0, len(keys), KV_READ_CONCURRENCY):
        chunk = keys[start : start + KV_READ_CONCURRENCY]
        values = await asyncio.gather(*(kv_get_bytes(kv, key) for key in chunk))
        entries.extend((key, *found) for key, found in zip(chunk, values, strict=True) if found is not None)
    return entries


async def kv_records(kv: KeyValue, cls: type[M], prefix: str = "") -> list[tuple[M, int]]:
    """Every live record under `prefix` with its revision (see `kv_entries`)."""
    records = []
    for _, value, revision in await kv_entries(kv, prefix):
        message = cls()
        message.ParseFromString(value)
        records.append((message, revision))
    return records


async def kv_keys(kv: KeyValue, prefix: str) -> list[str]:
    """Keys starting with `prefix` (a whole token prefix such as "tenant." or ""), listed by the server.

    Read from the bucket stream's per-subject state (`STREAM.INFO` with a subject filter, paged), which
    is a consistent snapshot. nats-py's `keys()` and `watch()` end their initial replay on a `None` marker
    that can come early (nats-io/nats.py#842, #995) and silently drop keys: a listing, or worse an
    erasure's purge, would then miss records. Keys whose last entry is a delete or purge marker are
    included; callers read or purge each key, and both treat a deleted key as absent.
    """
    bucket_prefix = kv._pre
    subjects = await stream_subject_counts(
        kv._js, kv._stream, f"{bucket_prefix}{prefix}>", timeout=KV_LIST_TIMEOUT_SECONDS
    )
    return [subject[len(bucket_prefix) :] for subject in subjects]


async def stream_subject_counts(
    js: JetStreamContext, stream: str, subject_filter: str, timeout: float = KV_LIST_TIMEOUT_SECONDS
) -> dict[str, int]:
    """Messages per NATS subject of `stream` under `subject_filter`, from the stream's per-subject state
    (`STREAM.INFO` with a subject filter, paged): one consistent snapshot per page, read by no consumer."""
    counts: dict[str, int] = {}
    offset = 0
    while True:
        request = json.dumps({"subjects_filter": subject_filter, "offset": offset}).encode()
        reply = await js._nc.request(f"{js._prefix}.STREAM.INFO.{stream}", request, timeout=timeout)
        response = json.loads(reply.data)
        if "error" in response:
            raise nats.js.errors.APIError.from_error(response["error"])
        subjects = (response.get("state") or {}).get("subjects") or {}
        counts.update((str(subject), int(count)) for subject, count in subjects.items())
        offset += len(subjects)
        if not subjects or offset >= int(response.get("total") or 0):
            return counts


async def kv_forget(kv: KeyValue, key_filter: str) -> None:
    """Removes every revision of the keys matching `key_filter` ("t1.sub_x" or "t1.sub_x.>"), leaving no
    marker behind.

    `KeyValue.delete` and `KeyValue.purge` write a marker whose NATS subject is the key itself, kept by the
    bucket's stream for good: a key that names a person (`<tenant>.<subject>...`) would outlive their
    erasure in it. A stream purge by subject removes the messages and writes nothing; readers then see the
    key as absent, exactly as after a delete. Needs `$JS.API.STREAM.PURGE.KV_<bucket>`, which the owner of
    a bucket holds (`likeness.access_policies`).
    """
    await kv._js.purge_stream(kv._stream, subject=f"{kv._pre}{key_filter}")
