"""Each identity's NATS user against a real nats-server: everything outside its allow-list is refused,
and what it is allowed works.

The server is private to this module (it is consumed from, purged and filled here), configured and
provisioned exactly as the dev stack's and the chart's: the users and permissions of
`likeness.access_policies`, the streams, buckets and consumers `likeness bootstrap` makes.

A refusal is read from the server itself: nats-server answers a publish or subscription outside the
user's permissions with `-ERR 'Permissions Violation ...'` and drops it; a round trip (PING/PONG) after
the operation orders that answer before the flush returns, so no test waits on a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig

from likeness import provisioning
from likeness.access_policies import NatsPermissions, nats_permissions
from likeness.audit import AuditTrail, AuditTrailFull
from likeness.bus import Bus, event_nats_subject, kv_get_bytes
from likeness.config import NatsCredentials
from likeness.creation_order import CreationOrder
from likeness.ids import new_id
from likeness.job_metrics import RENDER, TRAIN, QueueLagMonitor
from likeness.provisioner import provision_nats
from likeness.provisioning import (
    AUDIT_ACTIONS,
    AUDIT_STREAM,
    BOOTSTRAP,
    EVENTS_STREAM,
    GATEWAY,
    IDENTITIES,
    PHOTOS_BUCKET,
    RATE_LIMIT_SYNC,
    RETENTION,
    SUBJECT_ERASED,
    Identity,
    bucket,
    consumer,
    erasures_consumer_name,
    identity,
    inbox_prefix,
    tenant_queues,
)
from likeness.tenant_queues import QueueScheduler, TenantQueuePicker
from likeness.v1 import events_pb2
from likeness_dev.infra import Infra

TENANT, SUBJECT = "t1", new_id("sub")
TRAIN_CONSUMER, RENDER_CONSUMER = f"train-{TENANT}", f"render-{TENANT}-interactive"
#: A person's pseudonym in the audit trail (`audit.<tenant>.<pseudonym>.<action>`).
PSEUDONYM = "0f" * 32


def _audit(action: str) -> str:
    return f"audit.{TENANT}.{PSEUDONYM}.{action.replace('.', '_')}"


# ------------------------------------------------------------------------------------------ servers


def _private_nats(root: Path, audit_max_bytes: int | None = None) -> Infra:
    """A nats-server of our own, with every identity's user, provisioned by the bootstrap identity."""
    infra = Infra(root)
    infra.start_nats()
    try:
        infra.provision(s3_side=False, audit_max_bytes=audit_max_bytes)
    except BaseException:
        infra.stop_nats()
        raise
    return infra


@pytest.fixture(scope="module")
def private_nats(tmp_path_factory: pytest.TempPathFactory, server_process: None) -> Iterator[Infra]:
    infra = _private_nats(tmp_path_factory.mktemp("nats-permissions"))
    yield infra
    infra.stop_nats()


#: How long an answer may take before the test gives up (never reached when the server works: each
#: outcome is observed positively, a reply or a refusal, never inferred from silence).
ANSWER_DEADLINE = 20.0


@dataclass
class Connection:
    """One identity's connection, and every permission violation the server reported on it."""

    name: str
    nc: NATS
    violations: list[str] = field(default_factory=list)
    reported: asyncio.Event = field(default_factory=asyncio.Event)

    async def _refusal_of(self, nats_subject: str, before: int) -> None:
        needle = f'"{nats_subject.lower()}"'
        while not any(needle in text.lower() for text in self.violations[before:]):
            self.reported.clear()
            await self.reported.wait()

    async def _first(self, refusal: asyncio.Task[None], other: asyncio.Task[object], what: str) -> bool:
        """True if the refusal came first, False if the other outcome did."""
        done, pending = await asyncio.wait(
            {refusal, other}, timeout=ANSWER_DEADLINE, return_when="FIRST_COMPLETED"
        )
        for task in pending:
            task.cancel()
        if not done:
            raise AssertionError(f"{self.name}: nats-server neither answered nor refused {what}")
        return refusal in done

    async def refused_publish(self, nats_subject: str, payload: bytes = b"") -> bool:
        """Publishes with a reply inbox: allowed, whatever is published to answers (JetStream replies to
        every API request and stored message); refused, nats-server says so."""
        inbox = f"{inbox_prefix(self.name)}.{uuid.uuid4().hex}"
        answers = await self.nc.subscribe(inbox, max_msgs=1)
        before = len(self.violations)
        await self.nc.publish(nats_subject, payload, reply=inbox)
        await self.nc.flush(timeout=10)
        refusal = asyncio.create_task(self._refusal_of(nats_subject, before))
        answer = asyncio.create_task(answers.next_msg(timeout=ANSWER_DEADLINE))
        return await self._first(refusal, answer, f"a publish to {nats_subject}")

    async def refused_subscription(self, nats_subject: str, admin: NATS) -> bool:
        """Subscribes, then has the admin publish on a subject it covers: allowed, the message arrives;
        refused, nats-server says so."""
        before = len(self.violations)
        subscription = await self.nc.subscribe(nats_subject)
        await self.nc.flush(timeout=10)  # the subscription is in place before the admin publishes
        refusal = asyncio.create_task(self._refusal_of(nats_subject, before))
        arrival = asyncio.create_task(subscription.next_msg(timeout=ANSWER_DEADLINE))
        await admin.publish(_concrete(nats_subject), b"")
        await admin.flush()
        refused = await self._first(refusal, arrival, f"a subscription to {nats_subject}")
        await subscription.unsubscribe()
        return refused


async def _connect(infra: Infra, name: str) -> Connection:
    connection = Connection(name, None)  # type: ignore[arg-type]

    async def on_error(error: Exception) -> None:
        if "permissions violation" in str(error).lower():
            connection.violations.append(str(error))
            connection.reported.set()

    connection.nc = await nats.connect(
        infra.endpoints.nats_address,
        user=name,
        password=infra.credentials(name).nats_password,
        inbox_prefix=inbox_prefix(name),
        error_cb=on_error,
        max_reconnect_attempts=0,
        connect_timeout=5,
    )
    return connection


@pytest.fixture
async def connect(private_nats: Infra) -> AsyncIterator[object]:
    opened: list[Connection] = []

    async def open_as(name: str) -> Connection:
        connection = await _connect(private_nats, name)
        opened.append(connection)
        return connection

    yield open_as
    for connection in opened:
        await connection.nc.close()


# ------------------------------------------------------------------------------- expected (the spec)


def _matches(pattern: str, nats_subject: str, *, subscription: bool = False) -> bool:
    """NATS matching: `*` is one token, `>` one or more. A published subject is literal (a `>` in it is a
    token like any other); a subscription's wildcard must be covered by the pattern's (a subscription to
    `evt.>` needs `evt.>` allowed, not `evt.*.*.x`)."""
    want, have = pattern.split("."), nats_subject.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return len(have) > index
        if index >= len(have):
            return False
        if subscription and have[index] == ">":
            return False
        if token == "*":
            continue
        if token != have[index] or (subscription and have[index] == "*"):
            return False
    return len(have) == len(want)


def _publish_allowed(permissions: NatsPermissions, nats_subject: str) -> bool:
    allowed = any(_matches(pattern, nats_subject) for pattern in permissions.publish_allow)
    return allowed and not any(_matches(pattern, nats_subject) for pattern in permissions.publish_deny)


def _subscribe_allowed(permissions: NatsPermissions, nats_subject: str) -> bool:
    return any(_matches(pattern, nats_subject, subscription=True) for pattern in permissions.subscribe_allow)


API = "$JS.API"
EVENT = event_nats_subject(TENANT, SUBJECT, "{}")
#: Creating a work-queue consumer: a tenant's (allowed to its serve role only) and others no one may make.
CREATE_PROBES = [
    f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_TRAIN.{TRAIN_CONSUMER}.job.train.{TENANT}.*",
    f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_RENDER.{RENDER_CONSUMER}.job.render.{TENANT}.interactive.*",
    f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_TRAIN.spy",  # no filter: the whole stream
    f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_TRAIN.spy.job.train.>",
    f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_RENDER.spy.job.render.>",
    f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_RENDER.spy.job.train.{TENANT}.*",
    f"{API}.CONSUMER.DURABLE.CREATE.LIKENESS_JOBS_TRAIN.spy",
    f"{API}.CONSUMER.DURABLE.CREATE.LIKENESS_JOBS_RENDER.spy",
]
#: What an attacker holding one identity's credentials would try; every identity tries every one.
PUBLISH_PROBES = [
    *(EVENT.format(name) for name in ("subject.erased", "subject.opened", "photo.accepted")),
    *(EVENT.format(name) for name in ("training.completed", "render.completed")),
    f"job.train.{TENANT}.{SUBJECT}",
    f"job.render.{TENANT}.{SUBJECT}",
    f"job.render.{TENANT}.interactive.{SUBJECT}",
    # Every audit action of every writer: each identity may publish its own actions only.
    *(_audit(action) for actions in AUDIT_ACTIONS.values() for action in actions),
    "audit._mesh._.call_denied",
    *(f"$KV.{spec.name}.{TENANT}.probe" for spec in (bucket(PHOTOS_BUCKET), bucket("renders"))),
    *(f"$KV.{name}.{TENANT}.probe" for name in ("subjects", "trainings", "gateway_idempotency")),
    *(f"{API}.STREAM.MSG.GET.KV_{name}" for name in ("subjects", "renders", "gateway_idempotency")),
    *(f"{API}.STREAM.{verb}.{AUDIT_STREAM}" for verb in ("PURGE", "DELETE", "MSG.DELETE", "UPDATE")),
    f"{API}.STREAM.MSG.GET.{AUDIT_STREAM}",
    *(f"{API}.STREAM.{verb}.{EVENTS_STREAM}" for verb in ("PURGE", "DELETE", "MSG.DELETE", "UPDATE")),
    f"{API}.CONSUMER.MSG.NEXT.LIKENESS_JOBS_TRAIN.trainer-workers",
    f"{API}.CONSUMER.MSG.NEXT.LIKENESS_JOBS_RENDER.renderer-workers",
    f"{API}.CONSUMER.DELETE.LIKENESS_JOBS_TRAIN.trainer-workers",
    # The per-tenant queues (`likeness.tenant_queues`): workers list and fetch, serve roles create.
    f"{API}.CONSUMER.MSG.NEXT.LIKENESS_JOBS_TRAIN.{TRAIN_CONSUMER}",
    f"{API}.CONSUMER.MSG.NEXT.LIKENESS_JOBS_RENDER.{RENDER_CONSUMER}",
    f"{API}.CONSUMER.LIST.LIKENESS_JOBS_TRAIN",
    f"{API}.CONSUMER.LIST.LIKENESS_JOBS_RENDER",
    f"{API}.CONSUMER.DELETE.LIKENESS_JOBS_TRAIN.{TRAIN_CONSUMER}",
    *CREATE_PROBES,
    f"{API}.CONSUMER.CREATE.{EVENTS_STREAM}",  # an ephemeral consumer of any filter
    f"{API}.CONSUMER.CREATE.{EVENTS_STREAM}.spy.evt.>",
    f"{API}.CONSUMER.CREATE.{EVENTS_STREAM}.watch.{SUBJECT_ERASED}",
    f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_TRAIN.trainer-workers.job.train.>",
    f"{API}.STREAM.CREATE.PROBE",
    # GPU-seconds (issue 18): each kind of worker writes its own kind's keys; the serve roles only read.
    *(f"$KV.gpu_usage.20261205.{TENANT}.{kind}.probe" for kind in ("train", "render")),
    f"{API}.STREAM.MSG.GET.KV_gpu_usage",
    f"{API}.STREAM.MSG.DELETE.LIKENESS_JOBS_TRAIN",
]
SUBSCRIBE_PROBES = [
    "evt.>",
    "job.>",
    "audit.>",
    f"$KV.{PHOTOS_BUCKET}.>",
    "_INBOX.>",
    f"{inbox_prefix(RETENTION)}.>",
    f"{inbox_prefix(GATEWAY)}.>",
    "_deliver.ingest-erasures",
    "_deliver.gateway-erasures",
    SUBJECT_ERASED,
    EVENT.format("training.progress"),
    RATE_LIMIT_SYNC,
]
NAMES = [spec.name for spec in IDENTITIES]


# ----------------------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("name", NAMES)
async def test_every_publish_outside_the_allow_list_is_refused_by_nats_server(connect, name: str) -> None:
    permissions = nats_permissions(identity(name))
    connection = await connect(name)
    wrong = []
    for probe in PUBLISH_PROBES:
        # Harmless payloads: an allowed purge purges no one, an allowed fetch waits for nothing.
        payload = b""
        if "PURGE" in probe:
            payload = json.dumps({"filter": "evt.nobody.sub_nobody.>"}).encode()
        elif "MSG.NEXT" in probe:
            payload = json.dumps({"batch": 1, "no_wait": True}).encode()
        refused = await connection.refused_publish(probe, payload)
        if refused == _publish_allowed(permissions, probe):
            wrong.append(f"{probe}: {'refused' if refused else 'allowed'}")
    assert not wrong, f"{name}: nats-server disagrees with the spec on\n" + "\n".join(wrong)


@pytest.mark.parametrize("name", NAMES)
async def test_every_subscription_outside_the_allow_list_is_refused_by_nats_server(
    connect, private_nats: Infra, name: str
) -> None:
    permissions = nats_permissions(identity(name))
    connection = await connect(name)
    admin = await nats.connect(private_nats.endpoints.nats_url)
    wrong = []
    for probe in SUBSCRIBE_PROBES:
        refused = await connection.refused_subscription(probe, admin)
        if refused == _subscribe_allowed(permissions, probe):
            wrong.append(f"{probe}: {'refused' if refused else 'allowed'}")
    await admin.close()
    assert not wrong, f"{name}: nats-server disagrees with the spec on\n" + "\n".join(wrong)


# The boundaries the issue names, stated here by hand (not derived from the spec under test).
NEVER = {
    GATEWAY: [
        f"job.train.{TENANT}.{SUBJECT}",
        f"job.render.{TENANT}.{SUBJECT}",
        EVENT.format("photo.accepted"),
        EVENT.format("subject.erased"),
        f"$KV.renders.{TENANT}.ren_forged",
        f"$KV.subjects.{TENANT}.{SUBJECT}",
        # The gateway holds no audit secret and writes no record: none of anyone's actions.
        _audit("image.downloaded"),
        _audit("photos.exported"),
        _audit("access.denied"),
        f"{API}.STREAM.MSG.GET.{AUDIT_STREAM}",
        f"{API}.STREAM.INFO.{AUDIT_STREAM}",
        f"{API}.STREAM.CREATE.PROBE",
        f"$JS.ACK.{EVENTS_STREAM}.retention-deadlines.1.1.1.1.0",
        # It reports usage through the trainer's and renderer's API, never writes or reads it itself.
        f"$KV.gpu_usage.20261205.{TENANT}.train.forged",
        f"$KV.gpu_usage.20261205.{TENANT}.render.forged",
        f"{API}.STREAM.MSG.GET.KV_gpu_usage",
    ],
    "ingest": [
        EVENT.format("subject.erased"),
        f"$KV.renders.{TENANT}.ren_forged",
        f"job.train.{TENANT}.x",
        # A compromised ingest cannot write another service's audit records (issue 16, item 2).
        _audit("model.decrypted"),
        _audit("photos.decrypted"),
        _audit("consent.granted"),
    ],
    # Trainer and renderer read consent grants; none of them can write one or announce a withdrawal.
    # A serve role creates its own stream's tenant consumers only, with a filter under its own jobs'
    # subjects; it never reads a job, deletes a consumer or makes one of the other stream's.
    "trainer": [
        f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_RENDER.{RENDER_CONSUMER}.job.render.{TENANT}.interactive.*",
        f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_TRAIN.spy",
        f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_TRAIN.spy.job.train.>",
        f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_TRAIN.spy.job.render.{TENANT}.*",
        f"{API}.CONSUMER.DURABLE.CREATE.LIKENESS_JOBS_TRAIN.spy",
        f"{API}.CONSUMER.CREATE.{EVENTS_STREAM}.spy.evt.>",
        f"{API}.CONSUMER.DELETE.LIKENESS_JOBS_TRAIN.{TRAIN_CONSUMER}",
        f"{API}.CONSUMER.MSG.NEXT.LIKENESS_JOBS_TRAIN.{TRAIN_CONSUMER}",
    ],
    "trainer-worker": [
        # A worker makes no consumer (not even its tenants'), deletes none, and reads no other queue.
        f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_TRAIN.{TRAIN_CONSUMER}.job.train.{TENANT}.*",
        f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_TRAIN.spy",
        f"{API}.CONSUMER.DURABLE.CREATE.LIKENESS_JOBS_TRAIN.spy",
        f"{API}.CONSUMER.DELETE.LIKENESS_JOBS_TRAIN.{TRAIN_CONSUMER}",
        f"{API}.CONSUMER.MSG.NEXT.LIKENESS_JOBS_RENDER.{RENDER_CONSUMER}",
        EVENT.format("subject.erased"),
        f"$KV.renders.{TENANT}.ren_forged",
        f"$KV.consents.{TENANT}.{SUBJECT}",
        EVENT.format("consent.withdrawn"),
        _audit("image.downloaded"),
        _audit("subject.erased"),
        # Its own GPU-seconds only: not the renderers', and no one's total read back.
        f"$KV.gpu_usage.20261205.{TENANT}.render.forged",
        f"{API}.STREAM.MSG.GET.KV_gpu_usage",
        f"$KV.gpu_usage.{TENANT}.probe",
    ],
    "renderer": [
        f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_TRAIN.{TRAIN_CONSUMER}.job.train.{TENANT}.*",
        f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_RENDER.spy",
        f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_RENDER.spy.job.render.>",
        f"{API}.CONSUMER.DELETE.LIKENESS_JOBS_RENDER.{RENDER_CONSUMER}",
        f"{API}.CONSUMER.MSG.NEXT.LIKENESS_JOBS_RENDER.{RENDER_CONSUMER}",
        EVENT.format("subject.erased"),
        f"job.train.{TENANT}.{SUBJECT}",
        f"$KV.consents.{TENANT}.{SUBJECT}",
        EVENT.format("consent.withdrawn"),
        _audit("model.decrypted"),
        _audit("consent.withdrawn"),
        # It reads the tenants' GPU-seconds to enforce quotas; it writes none.
        f"$KV.gpu_usage.20261205.{TENANT}.render.forged",
    ],
    "renderer-worker": [
        f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_RENDER.{RENDER_CONSUMER}.job.render.{TENANT}.interactive.*",
        f"{API}.CONSUMER.CREATE.LIKENESS_JOBS_RENDER.spy",
        f"{API}.CONSUMER.DELETE.LIKENESS_JOBS_RENDER.{RENDER_CONSUMER}",
        f"{API}.CONSUMER.MSG.NEXT.LIKENESS_JOBS_TRAIN.{TRAIN_CONSUMER}",
        EVENT.format("subject.erased"),
        f"job.render.{TENANT}.{SUBJECT}",
        f"$KV.consents.{TENANT}.{SUBJECT}",
        _audit("photos.decrypted"),
        _audit("image.downloaded"),
        f"$KV.gpu_usage.20261205.{TENANT}.train.forged",
        f"{API}.STREAM.MSG.GET.KV_gpu_usage",
    ],
    RETENTION: [
        f"$KV.renders.{TENANT}.ren_forged",
        f"job.train.{TENANT}.{SUBJECT}",
        _audit("photos.decrypted"),
        _audit("model.decrypted"),
    ],
    # The provisioner makes what the spec names, nothing else: no stream of its own choosing, and no
    # consumer of its own (through which it could read events, records or the audit trail).
    BOOTSTRAP: [
        f"{API}.STREAM.CREATE.PROBE",
        f"{API}.CONSUMER.CREATE.{EVENTS_STREAM}.peek.evt.>",
        f"{API}.CONSUMER.CREATE.KV_subjects.peek.$KV.subjects.>",
        f"{API}.CONSUMER.CREATE.{AUDIT_STREAM}.peek.audit.>",
        f"{API}.CONSUMER.DURABLE.CREATE.{EVENTS_STREAM}.peek",
        f"$KV.subjects.{TENANT}.{SUBJECT}",
        EVENT.format("subject.erased"),
    ],
}
AUDIT_TAMPERING = [
    f"{API}.STREAM.{verb}.{AUDIT_STREAM}" for verb in ("PURGE", "DELETE", "MSG.DELETE", "UPDATE")
]


@pytest.mark.parametrize("name", sorted(NEVER))
async def test_the_named_boundaries_hold(connect, name: str) -> None:
    connection = await connect(name)
    allowed = [probe for probe in NEVER[name] if not await connection.refused_publish(probe)]
    assert allowed == [], f"{name} may publish {allowed}"


@pytest.mark.parametrize("name", NAMES)
async def test_nobody_may_delete_purge_or_reconfigure_the_audit_stream(connect, name: str) -> None:
    connection = await connect(name)
    allowed = [probe for probe in AUDIT_TAMPERING if not await connection.refused_publish(probe)]
    assert allowed == [], f"{name} may {allowed}"


@pytest.mark.parametrize("name", NAMES)
async def test_only_the_gateway_may_send_or_hear_rate_limit_reports(
    connect, private_nats: Infra, name: str
) -> None:
    """Stated by hand: a report charges every replica's buckets, so another identity forging one could
    starve a tenant, and reading them would show who is busy. The admin answers every report, so an
    allowed publish is seen arriving."""
    admin = await nats.connect(private_nats.endpoints.nats_url)
    try:

        async def answer(msg: nats.aio.msg.Msg) -> None:
            if msg.reply:  # the probes' publishes, not the admin's own
                await msg.respond(b"heard")

        await admin.subscribe(RATE_LIMIT_SYNC, cb=answer)
        await admin.flush()
        connection = await connect(name)
        refused = (
            await connection.refused_publish(RATE_LIMIT_SYNC),
            await connection.refused_subscription(RATE_LIMIT_SYNC, admin),
        )
    finally:
        await admin.close()
    assert refused == ((False, False) if name == GATEWAY else (True, True)), name


async def test_the_audit_stream_itself_refuses_purge_and_delete_even_to_an_unrestricted_user(
    private_nats: Infra,
) -> None:
    nc = await nats.connect(private_nats.endpoints.nats_url)  # the admin: no permission limits at all
    js = nc.jetstream()
    try:
        await js.publish(f"audit.{TENANT}.subject_read", b"a record")
        held = (await js.stream_info(AUDIT_STREAM)).state.messages
        with pytest.raises(nats.js.errors.APIError, match="purge not permitted"):
            await js.purge_stream(AUDIT_STREAM)
        with pytest.raises(nats.js.errors.APIError, match="delete not permitted"):
            await js.delete_msg(AUDIT_STREAM, 1)
        config = (await js.stream_info(AUDIT_STREAM)).config
        with pytest.raises(nats.js.errors.APIError, match="can not cancel deny"):
            await js.update_stream(dataclasses.replace(config, deny_purge=False, deny_delete=False))
        assert (await js.stream_info(AUDIT_STREAM)).state.messages == held
    finally:
        await nc.close()


# ------------------------------------------------------------------------------ a forged erasure


async def test_a_forged_subject_erased_is_refused_and_purges_nothing(private_nats: Infra) -> None:
    """Ingest's replicas purge a subject's photo records when `subject.erased` arrives on their durable
    consumer. Anyone but retention announcing it is refused by nats-server, so nothing is purged; the
    same event from retention purges (the check can fail)."""
    ingest = await Bus.connect(
        private_nats.endpoints.nats_address, "ingest", _credentials(private_nats, "ingest")
    )
    photos = await ingest.kv(PHOTOS_BUCKET)
    victim = new_id("sub")
    key = f"{TENANT}.{victim}.pho_probe"
    await photos.put(key, b"a verdict")
    purged: asyncio.Queue[str] = asyncio.Queue()

    async def purge(msg: nats.aio.msg.Msg) -> None:
        erased = events_pb2.SubjectErased.FromString(msg.data)
        if erased.subject_id != victim:  # other tests' probes on this server
            return
        await photos.purge(f"{erased.tenant}.{erased.subject_id}.pho_probe")
        await purged.put(erased.subject_id)

    await ingest.watch_events(SUBJECT_ERASED, purge, durable=erasures_consumer_name("ingest"))
    event = events_pb2.SubjectErased(tenant=TENANT, subject_id=victim, erasure_id="era_forged")
    try:
        for forger in [name for name in NAMES if name != RETENTION]:
            connection = await _connect(private_nats, forger)
            try:
                assert await connection.refused_publish(
                    event_nats_subject(TENANT, victim, "subject.erased"), event.SerializeToString()
                ), f"{forger} announced an erasure"
            finally:
                await connection.nc.close()
        await ingest.nc.flush()
        assert purged.empty()
        assert await kv_get_bytes(photos, key) is not None, "a forged erasure purged the record"

        retention = await Bus.connect(
            private_nats.endpoints.nats_address, RETENTION, _credentials(private_nats, RETENTION)
        )
        try:
            await retention.publish(event_nats_subject(TENANT, victim, "subject.erased"), event)
        finally:
            await retention.close()
        assert await asyncio.wait_for(purged.get(), timeout=30) == victim
        assert await kv_get_bytes(photos, key) is None, "retention's erasure purges"
    finally:
        await ingest.close()


# ----------------------------------------------------------------------- what is allowed works


def _credentials(infra: Infra, name: str) -> NatsCredentials:
    return NatsCredentials(name, infra.credentials(name).nats_password)


def _concrete(pattern: str) -> str:
    """A NATS subject the pattern allows: `*` and `>` filled with probe tokens."""
    tokens = pattern.split(".")
    filled = {0: TENANT, 1: SUBJECT}
    out = []
    for index, token in enumerate(tokens):
        if token == "*":
            out.append(filled.get(index - 1, "probe"))
        elif token == ">":
            out.append("probe")
        else:
            out.append(token)
    return ".".join(out)


async def _exercise(bus: Bus, spec: Identity) -> None:
    """Everything the identity's code does on NATS, done once, as that code does it."""
    access = spec.nats
    js = bus.js
    for name in access.kv:
        kv = await bus.kv(name)
        revision = await kv.put(f"{TENANT}.probe", b"x")
        assert await kv_get_bytes(kv, f"{TENANT}.probe") == (b"x", revision)
        await kv.purge(f"{TENANT}.probe")
        if bucket(name).allow_direct:  # pages read by batched direct gets
            assert [ids async for ids in CreationOrder(kv).newest_first(TENANT)] == []
        if name in access.kv_watch:
            watcher = await kv.watch(f"{TENANT}.probe")
            await watcher.stop()
    for name in access.kv_read:
        assert await kv_get_bytes(await bus.kv(name), f"{TENANT}.probe") is None
    for name, key_pattern in access.kv_put:
        await (await bus.kv(name)).put(_concrete(key_pattern), b"1.0")
    for pattern in access.publish:
        await bus.publish(_concrete(pattern), events_pb2.SubjectOpened(tenant=TENANT))
    for name in access.consumers:
        found = consumer(name)
        if found.pull:
            queue = await bus.work_queue(found.stream, name)
            message = await queue.next(timeout=0.5)
            if message is not None:
                await message.ack()
        else:

            async def ignore(msg: nats.aio.msg.Msg) -> None:
                return None

            await bus.watch_events(found.filter_subject, ignore, durable=name)
    for stream_name in access.schedules:
        queues = tenant_queues(stream_name)
        scheduler = QueueScheduler(js, queues, ack_wait=60.0, attempts=3)
        for priority in queues.priorities():
            await scheduler.ensure(TENANT, priority)
    for stream_name in access.works:
        picker = TenantQueuePicker(bus.nc, js, tenant_queues(stream_name))
        await js.stream_info(stream_name)
        for backlog in await picker.backlogs():
            await js.consumer_info(stream_name, backlog.consumer)
        found = await picker.next()
        if found is not None:
            await found[0].ack()
    for stream_name in access.queue_lag_of:
        await QueueLagMonitor(js, TRAIN if stream_name == TRAIN.stream else RENDER).measure()
    for name in access.lag_of:
        await js.stream_info(consumer(name).stream)
        await js.consumer_info(consumer(name).stream, name)
    for _, filter_subject in access.ephemeral:

        async def ignore_new(msg: nats.aio.msg.Msg) -> None:
            return None

        await bus.watch_events(filter_subject, ignore_new)
    for stream_name in access.stream_reads:
        await bus.holds_message(EVENT.format("training.completed"), "nothing", stream=stream_name)
    for stream_name in access.stream_purges:
        await js.purge_stream(stream_name, subject="evt.nobody.sub_nobody.>")
    for stream_name in access.stream_deletes:
        with contextlib.suppress(nats.js.errors.NotFoundError):  # the server answers: allowed
            await js.get_last_msg(stream_name, "job.train.nobody.sub_nobody")
        with contextlib.suppress(nats.js.errors.APIError):  # no message 1 (or not deletable): answered
            await js.delete_msg(stream_name, 10**9)
    for nats_subject in access.subscribe:
        await bus.nc.subscribe(nats_subject)
    for nats_subject in access.broadcast:
        # Its own report comes back to it: published and heard.
        heard = await bus.nc.subscribe(nats_subject, max_msgs=1)
        await bus.nc.publish(nats_subject, b"report")
        assert (await heard.next_msg(timeout=ANSWER_DEADLINE)).data == b"report"
    if access.provisions:
        await provision_nats(js)  # everything the spec names, again (idempotent)
    await bus.nc.flush()


@pytest.mark.parametrize("name", NAMES)
async def test_everything_an_identity_does_is_allowed(private_nats: Infra, name: str) -> None:
    violations: list[str] = []
    bus = await Bus.connect(
        private_nats.endpoints.nats_address, f"probe-{name}", _credentials(private_nats, name)
    )
    original = bus.nc._error_cb

    async def on_error(error: Exception) -> None:
        violations.append(str(error))
        await original(error)

    bus.nc._error_cb = on_error
    try:
        await _exercise(bus, identity(name))
    finally:
        await bus.close()
    assert not [text for text in violations if "permissions" in text.lower()], violations


# ------------------------------------------------------------------------------ a full audit stream


async def test_a_full_audit_stream_refuses_the_record_and_the_writer_says_so(
    tmp_path: Path, server_process: None
) -> None:
    small = _private_nats(tmp_path / "nats", audit_max_bytes=4096)
    try:
        bus = await Bus.connect(small.endpoints.nats_address, RETENTION, _credentials(small, RETENTION))
        trail = AuditTrail(bus, "audit-full-test-hmac-secret", actor="retention")
        try:
            written = 0
            refusal: AuditTrailFull | None = None
            while refusal is None and written < 1000:
                try:
                    await trail.record(TENANT, "subject.opened", SUBJECT, "ok")
                except AuditTrailFull as full:
                    refusal = full
                else:
                    written += 1
            assert refusal is not None, "a bounded audit stream refuses records once full"
            assert "audit stream is full" in str(refusal)
            assert written > 0, "records went in until the bound"
            admin = await nats.connect(small.endpoints.nats_url)
            try:
                held = (await admin.jetstream().stream_info(AUDIT_STREAM)).state
            finally:
                await admin.close()
            assert held.messages == written, "nothing old was dropped to make room"
            assert not await trail.record_quietly(TENANT, "subject.opened", SUBJECT, "ok")
        finally:
            await bus.close()
    finally:
        small.stop_nats()


# ------------------------------------------------------------------- upgrading to per-tenant queues


async def test_bootstrap_retires_the_shared_consumer_that_would_block_every_tenants_queue(
    tmp_path: Path, server_process: None
) -> None:
    """A deployment from before per-tenant queues still has `trainer-workers` (filter `job.train.>`): a
    work-queue stream refuses any tenant's consumer beside it, so the serve role could queue nothing until
    bootstrap, with its own rights, deletes it; a queued job stays in the stream for the tenant's consumer."""
    upgraded = _private_nats(tmp_path / "nats")
    try:
        admin = await nats.connect(upgraded.endpoints.nats_url)
        js = admin.jetstream()
        (_, retired), *_ = provisioning.RETIRED_CONSUMERS
        await js.add_consumer(
            provisioning.TRAIN_STREAM,
            ConsumerConfig(durable_name=retired, filter_subject="job.train.>", ack_policy=AckPolicy.EXPLICIT),
        )
        await js.publish(f"job.train.{TENANT}.{SUBJECT}", b"queued before the upgrade")
        trainer = await Bus.connect(
            upgraded.endpoints.nats_address, "trainer", _credentials(upgraded, "trainer")
        )
        bootstrap = await Bus.connect(
            upgraded.endpoints.nats_address, BOOTSTRAP, _credentials(upgraded, BOOTSTRAP)
        )
        try:
            scheduler = QueueScheduler(trainer.js, provisioning.TRAIN_QUEUES, ack_wait=60.0, attempts=3)
            with pytest.raises(nats.js.errors.APIError, match="not unique on workqueue stream"):
                await scheduler.ensure(TENANT)
            changes = await provision_nats(bootstrap.js)
            assert [(c.name, c.action) for c in changes if c.action == "deleted"] == [
                (f"{provisioning.TRAIN_STREAM}/{retired}", "deleted")
            ]
            name = await scheduler.ensure(TENANT)
            info = await js.consumer_info(provisioning.TRAIN_STREAM, name)
            assert info.num_pending == 1, "the job queued before the upgrade waits in the tenant's queue"
        finally:
            await trainer.close()
            await bootstrap.close()
            await admin.close()
    finally:
        upgraded.stop_nats()
