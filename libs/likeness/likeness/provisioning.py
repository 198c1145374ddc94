"""What Likeness needs from NATS and S3, provisioned once, and who may do what with it.

One description serves every place that must agree: `likeness bootstrap` creates these streams, KV
buckets, durable consumers and the S3 bucket (services only bind to them); `likeness.access_policies`
derives each identity's nats-server permissions, SeaweedFS identities, bucket policy and IAM policies from
it; the dev stack and the chart render the same tables.

Identities are one per process kind (`gateway`, `retention`, `ingest`, `trainer`, `trainer-worker`,
`renderer`, `renderer-worker`) plus `bootstrap`, which provisions. An identity's NATS access is declared
here in the words of the code that uses it (the buckets it writes, the events it publishes, the
consumers it binds); its JetStream API subjects are derived from that, never listed by hand.

Bounds: every stream and bucket has a byte bound, so that a runaway writer fills its own quota instead of
the disk. JetStream reserves every bound from the server's storage when the stream is made (it refuses
one that does not fit), so together they stay modest (about 5 GiB): production raises them here, where
they are reviewed (issue 18). The audit stream refuses new records when full (`DiscardNew`): a record is
never dropped silently to make room.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

# ------------------------------------------------------------------------------------------ names

EVENTS_STREAM = "LIKENESS_EVENTS"
AUDIT_STREAM = "LIKENESS_AUDIT"
TRAIN_STREAM = "LIKENESS_JOBS_TRAIN"
RENDER_STREAM = "LIKENESS_JOBS_RENDER"

SUBJECTS_BUCKET = "subjects"
ERASURES_BUCKET = "erasures"
TENANTS_BUCKET = "tenants"
DEADLINES_BUCKET = "deadlines"
LEASES_BUCKET = "leases"
RECEIPTS_BUCKET = "receipts"
#: Consent grants (`<tenant>.<subject>`): retention writes them; trainer and renderer only read them.
CONSENTS_BUCKET = "consents"
#: Subject ids per tenant in the order they were opened (`<tenant>.<subject>`, written once): what
#: `ListSubjects` pages through (`likeness.creation_order`).
SUBJECT_ORDER_BUCKET = "subject_order"
PHOTOS_BUCKET = "photos"
TRAININGS_BUCKET = "trainings"
RENDERS_BUCKET = "renders"
TEAM_LOOKS_BUCKET = "team_looks"
GATEWAY_IDEMPOTENCY_BUCKET = "gateway_idempotency"
#: GPU-seconds per tenant per day (`likeness.gpu_usage`): each GPU worker writes its own keys
#: (`<day>.<tenant>.<kind>.<instance>`); the serve roles read them to enforce and report quotas.
GPU_USAGE_BUCKET = "gpu_usage"
#: The NATS subjects of the keys each kind of GPU worker writes (`<day>.<tenant>.<kind>.<instance>`).
TRAIN_USAGE_KEYS = "*.*.train.*"
RENDER_USAGE_KEYS = "*.*.render.*"
#: Retention's buckets, in the order `RetentionRecords` opens them.
RETENTION_BUCKETS = (
    SUBJECTS_BUCKET,
    ERASURES_BUCKET,
    TENANTS_BUCKET,
    DEADLINES_BUCKET,
    LEASES_BUCKET,
    RECEIPTS_BUCKET,
    CONSENTS_BUCKET,
    SUBJECT_ORDER_BUCKET,
)

#: The one consumer each work queue had before per-tenant queues (issue 18): its filter (the whole stream)
#: overlaps every tenant's, which a work-queue stream refuses, so bootstrap deletes it where it remains.
RETIRED_CONSUMERS = ((TRAIN_STREAM, "trainer-workers"), (RENDER_STREAM, "renderer-workers"))
RETENTION_DEADLINES_CONSUMER = "retention-deadlines"

GATEWAY = "gateway"
RETENTION = "retention"
INGEST = "ingest"
TRAINER = "trainer"
TRAINER_WORKER = "trainer-worker"
RENDERER = "renderer"
RENDERER_WORKER = "renderer-worker"
BOOTSTRAP = "bootstrap"
SERVICE_IDENTITIES = (GATEWAY, RETENTION, INGEST, TRAINER, TRAINER_WORKER, RENDERER, RENDERER_WORKER)

DEFAULT_S3_BUCKET = "likeness-data"

DAY = 24 * 3600.0
GIB = 1024**3
MIB = 1024**2

#: NATS subjects (`likeness.bus` builds them; repeated here as the filters and allow-lists they are).
SUBJECT_ERASED = "evt.*.*.subject.erased"
CONSENT_WITHDRAWN = "evt.*.*.consent.withdrawn"
#: Where refused gRPC calls are audited (`likeness.audit.CallAudit`): no tenant, so a token of its own.
CALL_DENIED_AUDIT = "audit._mesh._.call_denied"
#: The gateway replicas' rate-limit reports to each other (`gateway.ratelimit_sync`): core NATS, in no
#: stream (a report is worth something for a fraction of a second), the gateway's alone.
RATE_LIMIT_SYNC = "ratelimit.gateway.sync"

#: The audit actions each identity writes (`likeness.audit`'s table): it may publish those and no other,
#: so a compromised service cannot write another's records (`audit.<tenant>.<pseudonym>.<action>`).
AUDIT_ACTIONS: dict[str, tuple[str, ...]] = {
    INGEST: ("photo.stored", "photos.exported", "templates.exported", "photo.deleted"),
    TRAINER: ("training.refused", "model.exported", "model.deleted"),
    TRAINER_WORKER: ("photos.decrypted",),
    RENDERER: ("render.refused", "image.downloaded", "image.rejected", "render.deleted"),
    RENDERER_WORKER: ("model.decrypted", "photo.decrypted"),
    RETENTION: (
        "subject.opened",
        "consent.granted",
        "consent.withdrawn",
        "consent.refused",
        "subject.erase_requested",
        "subject.key_destroyed",
        "subject.erased",
        "receipt.issued",
        "data.deleted",
        "orphan.objects_deleted",
        "orphan.key_destroyed",
        "policy.changed",
        "subject.exported",
        "subject.rectified",
        "access.denied",
    ),
}


def audit_publish_subjects(identity_name: str) -> tuple[str, ...]:
    """The audit subjects an identity may publish on: its own actions, for any tenant and pseudonym."""
    return tuple(f"audit.*.*.{action.replace('.', '_')}" for action in AUDIT_ACTIONS.get(identity_name, ()))


def erasures_consumer_name(service: str) -> str:
    """The durable consumer through which a service's replicas purge an erased subject's records."""
    return f"{service}-erasures"


#: Buckets whose keys name a subject (`<tenant>.<subject>...`): on erasure their owners forget those keys
#: with a stream purge (`likeness.bus.kv_forget`), which leaves no marker naming the person.
SUBJECT_KEYED_BUCKETS = frozenset(
    {
        SUBJECTS_BUCKET,
        DEADLINES_BUCKET,
        CONSENTS_BUCKET,
        SUBJECT_ORDER_BUCKET,
        PHOTOS_BUCKET,
        GATEWAY_IDEMPOTENCY_BUCKET,
    }
)

#: Services that purge their own records of an erased subject, each through its durable consumer of
#: `subject.erased`; retention forgets an erasure notice once every one of them has acknowledged it.
ERASURE_PURGERS = (INGEST, TRAINER, RENDERER, GATEWAY)


def withdrawals_consumer_name(service: str) -> str:
    """The durable consumer through which a job service's replicas cancel the jobs of a withdrawn grant."""
    return f"{service}-withdrawals"


def inbox_prefix(identity: str) -> str:
    """The reply subjects of an identity's connection: its own, so no other identity can read them."""
    return f"_INBOX.{identity}"


def deliver_subject(consumer: str) -> str:
    """Where a provisioned push consumer delivers: a subject only its owner may subscribe to."""
    return f"_deliver.{consumer}"


# --------------------------------------------------------------------------------------- streams

#: A job still queued after this long is abandoned: its message expires (the record is failed by the job
#: sweeper), so a queue nobody drains cannot hold work forever (issue 18).
JOB_MAX_AGE_SECONDS = 7 * DAY

STREAMS: tuple[StreamConfig, ...] = (
    StreamConfig(
        name=EVENTS_STREAM,
        subjects=["evt.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=30 * DAY,
        max_bytes=1 * GIB,
        duplicate_window=120.0,
        discard=DiscardPolicy.OLD,
    ),
    StreamConfig(
        name=AUDIT_STREAM,
        subjects=["audit.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=6 * 365 * DAY,
        max_bytes=2 * GIB,
        duplicate_window=120.0,
        # Full means full: a write fails (and says so) instead of pushing the oldest record out.
        discard=DiscardPolicy.NEW,
        # Nobody deletes or purges a record, not even the stream's writer; nats-server refuses to turn
        # these off again once set.
        deny_delete=True,
        deny_purge=True,
    ),
    StreamConfig(
        name=TRAIN_STREAM,
        subjects=["job.train.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=JOB_MAX_AGE_SECONDS,
        max_bytes=128 * MIB,
        duplicate_window=600.0,
        # A full queue refuses new jobs (the serve role answers "unavailable") rather than losing old ones.
        discard=DiscardPolicy.NEW,
        # One queued or running training per person (`job.train.<tenant>.<subject>`): the server refuses a
        # second message on the subject, atomically (`likeness.quotas`, `active_training_per_subject`).
        max_msgs_per_subject=1,
        discard_new_per_subject=True,
    ),
    StreamConfig(
        name=RENDER_STREAM,
        subjects=["job.render.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_age=JOB_MAX_AGE_SECONDS,
        max_bytes=128 * MIB,
        duplicate_window=600.0,
        discard=DiscardPolicy.NEW,
    ),
)
#: Streams bootstrap creates but never changes afterwards: their drift is reported, an operator decides.
FROZEN_STREAMS = frozenset({AUDIT_STREAM})


def stream(name: str) -> StreamConfig:
    return next(config for config in STREAMS if config.name == name)


#: JetStream keeps at most five copies of a stream.
MAX_REPLICAS = 5


@dataclass(frozen=True)
class Bounds:
    """An operator's byte and age bounds by stream or bucket name (`likeness bootstrap`'s settings),
    replacing the spec's, and how many copies a JetStream cluster keeps of each. KV buckets take a byte
    bound only: an age bound on a bucket of records would drop a live record unseen (their records end
    with their subject's erasure or retention deadline; transient ones carry their own TTL: idempotency
    records, rejected photo verdicts)."""

    max_bytes: Mapping[str, int] = field(default_factory=dict)
    max_age_seconds: Mapping[str, float] = field(default_factory=dict)
    #: Copies of every stream and bucket a JetStream cluster keeps (3 survives the loss of any one
    #: server); 1, the default, is all a single server can hold.
    replicas: int = 1

    def problems(self) -> list[str]:
        """What is wrong with these bounds, in words an operator can act on (empty: nothing)."""
        streams = {config.name for config in STREAMS}
        buckets = {spec.name for spec in BUCKETS}
        found = [
            f"no stream or bucket {name!r} (streams: {', '.join(sorted(str(s) for s in streams))}; "
            f"buckets: {', '.join(sorted(buckets))})"
            for name in self.max_bytes
            if name not in streams | buckets
        ]
        found += [
            f"no stream {name!r} takes an age bound (streams: {', '.join(sorted(str(s) for s in streams))})"
            for name in self.max_age_seconds
            if name not in streams
        ]
        found += [
            f"the byte bound of {name!r} must be at least 1 MiB"
            for name, size in self.max_bytes.items()
            if size < MIB
        ]
        found += [
            f"the age bound of {name!r} must be at least one hour"
            for name, age in self.max_age_seconds.items()
            if age < 3600
        ]
        if not 1 <= self.replicas <= MAX_REPLICAS:
            found.append(f"the replicas must be 1 to {MAX_REPLICAS} (JetStream's limit), not {self.replicas}")
        return found

    def streams(self) -> list[StreamConfig]:
        return [
            replace(
                config,
                max_bytes=self.max_bytes.get(str(config.name), config.max_bytes),
                max_age=self.max_age_seconds.get(str(config.name), config.max_age),
                num_replicas=self.replicas,
            )
            for config in STREAMS
        ]

    def buckets(self) -> list[BucketSpec]:
        return [
            replace(spec, max_bytes=self.max_bytes.get(spec.name, spec.max_bytes), replicas=self.replicas)
            for spec in BUCKETS
        ]


# ------------------------------------------------------------------------------------ KV buckets


@dataclass(frozen=True)
class BucketSpec:
    """A JetStream KV bucket, stored as the stream `KV_<name>` with the configuration nats-py gives it."""

    name: str
    history: int = 1
    ttl: float | None = None
    max_bytes: int = 128 * MIB
    #: Copies of the bucket's stream in a JetStream cluster (`Bounds.replicas`): 1 on a single server.
    replicas: int = 1
    #: Batched direct gets (`likeness.creation_order` pages through the stream with them).
    allow_direct: bool = False

    @property
    def stream_name(self) -> str:
        return f"KV_{self.name}"

    def stream_config(self) -> StreamConfig:
        """What `JetStreamContext.create_key_value` would create (so clients bind it as a bucket)."""
        duplicate_window = 120.0 if not self.ttl else min(120.0, self.ttl)
        return StreamConfig(
            name=self.stream_name,
            subjects=[f"$KV.{self.name}.>"],
            allow_rollup_hdrs=True,
            allow_msg_ttl=True,
            allow_direct=self.allow_direct,
            deny_delete=True,
            discard=DiscardPolicy.NEW,
            duplicate_window=duplicate_window,
            max_age=self.ttl,
            max_bytes=self.max_bytes,
            max_consumers=-1,
            max_msgs=-1,
            max_msgs_per_subject=self.history,
            num_replicas=self.replicas,
            storage=StorageType.FILE,
        )


#: The gateway's idempotency records live as long as a client may retry (`idempotency_ttl_seconds`).
IDEMPOTENCY_TTL_SECONDS = 24 * 3600.0
#: A day's GPU-seconds are read until that UTC day ends; two days keep yesterday's for a late reader.
GPU_USAGE_TTL_SECONDS = 2 * DAY

BUCKETS: tuple[BucketSpec, ...] = (
    *(BucketSpec(name) for name in RETENTION_BUCKETS if name != SUBJECT_ORDER_BUCKET),
    BucketSpec(SUBJECT_ORDER_BUCKET, max_bytes=64 * MIB, allow_direct=True),
    BucketSpec(PHOTOS_BUCKET),
    BucketSpec(TRAININGS_BUCKET),
    BucketSpec(RENDERS_BUCKET),
    BucketSpec(TEAM_LOOKS_BUCKET, max_bytes=32 * MIB),
    BucketSpec(GATEWAY_IDEMPOTENCY_BUCKET, ttl=IDEMPOTENCY_TTL_SECONDS, max_bytes=512 * MIB),
    # One small key per tenant and worker process a day: 16 MiB is some 100k of them.
    BucketSpec(GPU_USAGE_BUCKET, ttl=GPU_USAGE_TTL_SECONDS, max_bytes=16 * MIB),
)


def bucket(name: str) -> BucketSpec:
    return next(spec for spec in BUCKETS if spec.name == name)


# ------------------------------------------------------------------------------------- consumers


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable consumer: `pull` (a work queue's workers fetch) or `push` (delivered to a queue group of
    the owner's replicas, on a deliver subject only the owner may subscribe to)."""

    stream: str
    name: str
    filter_subject: str
    pull: bool
    ack_wait: float = 30.0
    max_deliver: int = 20
    max_ack_pending: int = 1000

    @property
    def deliver_subject(self) -> str | None:
        return None if self.pull else deliver_subject(self.name)

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            name=self.name,
            durable_name=self.name,
            filter_subject=self.filter_subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
            deliver_subject=self.deliver_subject,
            deliver_group=None if self.pull else self.name,
        )


#: Render priorities, in the order a worker serves them within a tenant (`job.render.<tenant>.<priority>.*`).
INTERACTIVE = "interactive"
BULK = "bulk"
PRIORITIES = (INTERACTIVE, BULK)


@dataclass(frozen=True)
class TenantQueues:
    """A work queue split into per-tenant (for renders also per-priority) pull consumers, so that workers
    can share themselves fairly between tenants (`likeness.tenant_queues`).

    Tenants are not known in advance (their names come from tokens), so bootstrap creates none of these:
    the job service's serve role creates a tenant's consumer before publishing its first job, and may create
    only consumers of its own stream whose filter lies under `job.<kind>.` (`create_filter_pattern`). The
    filters of two tenants (or priorities) never overlap, as a work-queue stream requires.
    """

    kind: str
    stream: str
    prioritized: bool
    #: The NATS subjects' first tokens, before the tenant (`job.<kind>`; tests use private streams).
    prefix: str = ""

    @property
    def root(self) -> str:
        return self.prefix or f"job.{self.kind}"

    @property
    def create_filter_pattern(self) -> str:
        """The filters the serve role may create consumers with, as a NATS permission pattern."""
        return f"{self.root}.*.*.*" if self.prioritized else f"{self.root}.*.*"

    def priorities(self) -> tuple[str | None, ...]:
        return PRIORITIES if self.prioritized else (None,)

    def filter_subject(self, tenant: str, priority: str | None = None) -> str:
        if self.prioritized:
            return f"{self.root}.{tenant}.{self._priority(priority)}.*"
        return f"{self.root}.{tenant}.*"

    def consumer_name(self, tenant: str, priority: str | None = None) -> str:
        """`train-<tenant>`, `render-<tenant>-<priority>`: a tenant name is one NATS token of lower-case
        letters, digits and dashes (`likeness.ids`), and the fixed suffix keeps two tenants' names apart."""
        if self.prioritized:
            return f"{self.kind}-{tenant}-{self._priority(priority)}"
        return f"{self.kind}-{tenant}"

    def consumer(
        self, tenant: str, priority: str | None, *, ack_wait: float, max_deliver: int
    ) -> ConsumerSpec:
        return ConsumerSpec(
            self.stream,
            self.consumer_name(tenant, priority),
            self.filter_subject(tenant, priority),
            pull=True,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=64,
        )

    def parse_filter(self, filter_subject: str) -> tuple[str, str | None] | None:
        """(tenant, priority) of one of this queue's tenant consumers, from its filter; None for another."""
        root = f"{self.root}."
        if not filter_subject.startswith(root) or not filter_subject.endswith(".*"):
            return None
        tokens = filter_subject[len(root) : -len(".*")].split(".")
        if self.prioritized and len(tokens) == 2 and tokens[1] in PRIORITIES:
            return tokens[0], tokens[1]
        if not self.prioritized and len(tokens) == 1:
            return tokens[0], None
        return None

    def _priority(self, priority: str | None) -> str:
        if priority not in PRIORITIES:
            raise ValueError(f"a render priority is one of {', '.join(PRIORITIES)}, not {priority!r}")
        return priority


TRAIN_QUEUES = TenantQueues("train", TRAIN_STREAM, prioritized=False)
RENDER_QUEUES = TenantQueues("render", RENDER_STREAM, prioritized=True)
TENANT_QUEUES = (TRAIN_QUEUES, RENDER_QUEUES)


def tenant_queues(stream_name: str) -> TenantQueues:
    return next(queues for queues in TENANT_QUEUES if queues.stream == stream_name)


def erasures_consumer(name: str) -> ConsumerSpec:
    """A push consumer of `subject.erased` (the configuration `Bus.watch_events` binds with `durable`)."""
    return ConsumerSpec(EVENTS_STREAM, name, SUBJECT_ERASED, pull=False)


def withdrawals_consumer(name: str) -> ConsumerSpec:
    """A push consumer of `consent.withdrawn` (bound by `likeness.consent.cancel_jobs_on_withdrawal`)."""
    return ConsumerSpec(EVENTS_STREAM, name, CONSENT_WITHDRAWN, pull=False)


def deadlines_consumer(name: str = RETENTION_DEADLINES_CONSUMER) -> ConsumerSpec:
    return ConsumerSpec(EVENTS_STREAM, name, "evt.>", pull=False)


#: Bootstrap's consumers. The work queues' per-tenant consumers are not among them (see `TenantQueues`).
CONSUMERS: tuple[ConsumerSpec, ...] = (
    deadlines_consumer(),
    *(erasures_consumer(erasures_consumer_name(service)) for service in (INGEST, TRAINER, RENDERER, GATEWAY)),
    *(withdrawals_consumer(withdrawals_consumer_name(service)) for service in (TRAINER, RENDERER)),
)


def consumer(name: str) -> ConsumerSpec:
    return next(spec for spec in CONSUMERS if spec.name == name)


def retention_resources(prefix: str) -> tuple[list[BucketSpec], list[ConsumerSpec]]:
    """Retention's buckets and deadlines consumer under a name prefix (`kv_bucket_prefix`: tests run
    isolated retention instances on shared servers this way; production uses no prefix)."""
    buckets = [replace(bucket(name), name=f"{prefix}{name}") for name in RETENTION_BUCKETS]
    return buckets, [deadlines_consumer(f"{prefix}{RETENTION_DEADLINES_CONSUMER}")]


# ------------------------------------------------------------------------------------------- S3

#: Object keys of one kind, as patterns (`*` matches any characters, `/` included; keys come only from
#: `likeness.object_names`, so `t/<tenant>/s/<subject>/<kind>/...` holds).
PHOTOS = "t/*/s/*/photos/*"
FACES = "t/*/s/*/faces/*"
MODELS = "t/*/s/*/models/*"
LORAS = "t/*/s/*/models/*/lora"
MODEL_FACES = "t/*/s/*/models/*/faces"
CHECKPOINTS = "t/*/s/*/models/*/ckpt-*"
RENDERS = "t/*/s/*/renders/*"
EVERY_SUBJECT = "t/*"


@dataclass(frozen=True)
class S3Access:
    """What one identity may do in the bucket, by key pattern. `delete` places delete markers (the
    object is hidden, its versions stay); `delete_versions` removes versions for good: only retention,
    plus what a GPU worker's own killed attempt left behind (the trainer worker's checkpoints, scratch state
    it alone reads, gone once trained; the render worker's images of an attempt that is redone), so that no
    copy of a person's outputs outlives the attempt that made it (data minimisation)."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    delete_versions: tuple[str, ...] = ()
    list: tuple[str, ...] = ()
    #: Creates the bucket and sets its versioning and policy (bootstrap only).
    configure_bucket: bool = False

    @property
    def empty(self) -> bool:
        return not (self.read or self.write or self.delete or self.delete_versions or self.list)


# ------------------------------------------------------------------------------------------ NATS


@dataclass(frozen=True)
class NatsAccess:
    """What one identity does on NATS, in the words of the code that does it."""

    #: KV buckets it reads and writes (get, put, create, update, delete, purge, listing).
    kv: tuple[str, ...] = ()
    #: Of those, buckets it watches (a job's record, to stop when it is cancelled).
    kv_watch: tuple[str, ...] = ()
    #: KV buckets of another identity it only reads, key by key (trainer and renderer: consent grants).
    kv_read: tuple[str, ...] = ()
    #: (bucket, key pattern) of keys it only writes (a GPU worker: its own GPU-seconds), reading none.
    kv_put: tuple[tuple[str, str], ...] = ()
    #: NATS subjects it publishes on (stream subjects: events, jobs, audit).
    publish: tuple[str, ...] = ()
    #: Durable consumers it binds and acknowledges (pull: fetches; push: subscribes to its deliver subject).
    consumers: tuple[str, ...] = ()
    #: Work queues (streams) whose per-tenant consumers it creates, each with a filter under its own
    #: `job.<kind>.` (`TenantQueues`): the serve role, scheduling a tenant's first job.
    schedules: tuple[str, ...] = ()
    #: Work queues (streams) whose per-tenant consumers it lists, fetches from and acknowledges: the GPU
    #: workers. Listing and fetching only: a worker never creates or changes a consumer.
    works: tuple[str, ...] = ()
    #: Work queues (streams) whose lag it reads (the stream's info and oldest message, its consumers' list).
    queue_lag_of: tuple[str, ...] = ()
    #: Work-queue consumers whose lag it reads (info of the consumer and stream, the oldest message).
    lag_of: tuple[str, ...] = ()
    #: (stream, filter) of short-lived consumers it creates, without acks (new events only).
    ephemeral: tuple[tuple[str, str], ...] = ()
    #: Streams whose messages it reads one by one (is this event already published?).
    stream_reads: tuple[str, ...] = ()
    #: Streams it purges by NATS subject (a subject's history; a training's own late events).
    stream_purges: tuple[str, ...] = ()
    #: Streams whose messages it deletes one by one (a cancelled training's queued job).
    stream_deletes: tuple[str, ...] = ()
    #: Plain (core NATS) subscriptions: the gateway's caches and progress feeds.
    subscribe: tuple[str, ...] = ()
    #: Core NATS subjects, stored by no stream, that it both publishes and subscribes to: replicas of
    #: the identity telling each other (the gateway's rate-limit sync).
    broadcast: tuple[str, ...] = ()
    #: Provisioning: creates and updates streams and consumers (never the frozen ones), reads no message.
    provisions: bool = False


@dataclass(frozen=True)
class Identity:
    name: str
    nats: NatsAccess = field(default_factory=NatsAccess)
    #: None: no S3 identity at all (the gateway holds no storage right).
    s3: S3Access | None = None
    #: What the identity is, in a sentence (rendered next to its permissions).
    about: str = ""


IDENTITIES: tuple[Identity, ...] = (
    Identity(
        GATEWAY,
        NatsAccess(
            kv=(GATEWAY_IDEMPOTENCY_BUCKET,),
            consumers=(erasures_consumer_name(GATEWAY),),
            subscribe=(SUBJECT_ERASED, "evt.*.*.training.*", "evt.*.*.render.*"),
            broadcast=(RATE_LIMIT_SYNC,),
        ),
        about=(
            "the public API: its idempotency records, the progress events it streams and its replicas' "
            "rate-limit reports, nothing else"
        ),
    ),
    Identity(
        RETENTION,
        NatsAccess(
            kv=RETENTION_BUCKETS,
            publish=(
                "evt.*.*.subject.opened",
                "evt.*.*.subject.erased",
                CONSENT_WITHDRAWN,
                # Like every gRPC service, it audits the calls its caller table refuses.
                CALL_DENIED_AUDIT,
                *audit_publish_subjects(RETENTION),
            ),
            consumers=(RETENTION_DEADLINES_CONSUMER,),
            # The processing log and the tenant's trail (`retention.audit_log`): records one by one.
            stream_reads=(AUDIT_STREAM,),
            # Erasure purges the subject's events and its still-queued jobs (their subjects name them).
            stream_purges=(EVENTS_STREAM, TRAIN_STREAM, RENDER_STREAM),
            # Whether every purger has acknowledged an erasure notice (`retention.history`).
            lag_of=tuple(erasures_consumer_name(service) for service in ERASURE_PURGERS),
        ),
        S3Access(list=(EVERY_SUBJECT,), delete=(EVERY_SUBJECT,), delete_versions=(EVERY_SUBJECT,)),
        about="subjects, deadlines and erasures: the only one that announces an erasure or deletes versions",
    ),
    Identity(
        INGEST,
        NatsAccess(
            kv=(PHOTOS_BUCKET,),
            publish=("evt.*.*.photo.*", CALL_DENIED_AUDIT, *audit_publish_subjects(INGEST)),
            consumers=(erasures_consumer_name(INGEST),),
        ),
        S3Access(read=(PHOTOS, FACES), write=(PHOTOS, FACES), delete=(PHOTOS, FACES), list=(PHOTOS, FACES)),
        about="sanitized photos and face templates",
    ),
    Identity(
        TRAINER,
        NatsAccess(
            kv=(TRAININGS_BUCKET,),
            # Consent grants; the tenants' GPU-seconds (quotas and the usage report).
            kv_read=(CONSENTS_BUCKET, GPU_USAGE_BUCKET),
            publish=("job.train.*.*", CALL_DENIED_AUDIT, *audit_publish_subjects(TRAINER)),
            consumers=(erasures_consumer_name(TRAINER), withdrawals_consumer_name(TRAINER)),
            # A training cancelled while queued frees its subject's place at once (`CancelTraining`).
            stream_deletes=(TRAIN_STREAM,),
            schedules=(TRAIN_STREAM,),
            # The queue lag, and a tenant's trainings in flight (the stream's per-subject counts).
            queue_lag_of=(TRAIN_STREAM,),
        ),
        # A data export opens the person's models (`ExportModels`): the LoRAs and the templates beside them.
        S3Access(read=(LORAS, MODEL_FACES)),
        about="the training API: queues jobs, reads and cancels records; reads models for an export only",
    ),
    Identity(
        TRAINER_WORKER,
        NatsAccess(
            kv=(TRAININGS_BUCKET,),
            kv_watch=(TRAININGS_BUCKET,),
            kv_read=(CONSENTS_BUCKET,),
            kv_put=((GPU_USAGE_BUCKET, TRAIN_USAGE_KEYS),),
            publish=("evt.*.*.training.*", *audit_publish_subjects(TRAINER_WORKER)),
            works=(TRAIN_STREAM,),
            ephemeral=((EVENTS_STREAM, SUBJECT_ERASED),),
            stream_reads=(EVENTS_STREAM,),
            stream_purges=(EVENTS_STREAM,),
        ),
        S3Access(
            read=(PHOTOS, FACES, MODELS),
            write=(MODELS,),
            delete=(MODELS,),
            delete_versions=(CHECKPOINTS,),
            list=(MODELS,),
        ),
        about="the GPU training worker: photos and their face templates in, checkpoints and a LoRA out",
    ),
    Identity(
        RENDERER,
        NatsAccess(
            kv=(RENDERS_BUCKET, TEAM_LOOKS_BUCKET),
            kv_read=(CONSENTS_BUCKET, GPU_USAGE_BUCKET),
            publish=("job.render.*.*.*", CALL_DENIED_AUDIT, *audit_publish_subjects(RENDERER)),
            consumers=(erasures_consumer_name(RENDERER), withdrawals_consumer_name(RENDERER)),
            schedules=(RENDER_STREAM,),
            queue_lag_of=(RENDER_STREAM,),
        ),
        # Reads images to stream them; removes none: a rejected image's or deleted render's versions are
        # retention's to remove (PurgeItem, issue 16), so a compromised render API can delete nothing.
        S3Access(read=(RENDERS,)),
        about="the render API: queues jobs, team looks, streams finished images",
    ),
    Identity(
        RENDERER_WORKER,
        NatsAccess(
            kv=(RENDERS_BUCKET,),
            kv_watch=(RENDERS_BUCKET,),
            kv_read=(CONSENTS_BUCKET,),
            kv_put=((GPU_USAGE_BUCKET, RENDER_USAGE_KEYS),),
            publish=("evt.*.*.render.*", *audit_publish_subjects(RENDERER_WORKER)),
            works=(RENDER_STREAM,),
            ephemeral=((EVENTS_STREAM, SUBJECT_ERASED),),
            stream_reads=(EVENTS_STREAM,),
        ),
        # photos/: the one accepted crop an instant render conditions on (decrypted in memory only).
        S3Access(
            read=(LORAS, MODEL_FACES, FACES, PHOTOS),
            write=(RENDERS,),
            delete=(RENDERS,),
            delete_versions=(RENDERS,),
            list=(FACES, RENDERS),
        ),
        about="the GPU render worker: a LoRA, face templates or a photo (instant mode) in, marked images out",
    ),
    Identity(
        BOOTSTRAP,
        NatsAccess(provisions=True),
        S3Access(configure_bucket=True),
        about=(
            "provisioning (`likeness bootstrap`): creates the streams, buckets and consumers the spec "
            "names (and deletes the retired shared work-queue consumers), and no consumer of its own: "
            "reads no record"
        ),
    ),
)


def identity(name: str) -> Identity:
    for found in IDENTITIES:
        if found.name == name:
            return found
    raise KeyError(f"no identity {name!r}; known: {', '.join(spec.name for spec in IDENTITIES)}")


def owner_of_consumer(name: str) -> str:
    """The identity that binds a provisioned consumer."""
    return next(spec.name for spec in IDENTITIES if name in spec.nats.consumers)
