"""Consent as data: the fixed purposes, what makes a grant live, and the checks trainer and renderer run.

Retention owns every subject's grants (KV bucket `consents`, key `<tenant>.<subject>`, a `SubjectConsents`
record with the whole history). Trainer and renderer read that record, key by key and never writing it
(`likeness.provisioning`: `kv_read`), twice per job: when the job is submitted (the serve role refuses it
with PERMISSION_DENIED `consent_required`) and when a worker starts it (a job whose grant was withdrawn
while it queued is cancelled, `consent withdrawn`, never run). Workers call no gRPC (issue 14), so
reading the owner's record is the way they learn of a withdrawal; the record is checked against its key,
as every record is.

A withdrawal is also announced (`evt.<tenant>.<subject>.consent.withdrawn`): each job service's serve role,
always up, cancels that purpose's queued and running jobs through a durable consumer of its own
(`cancel_jobs_on_withdrawal`), and a running job's worker stops within a step (it watches its record).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

import grpc
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from likeness.audit import AuditTrail
from likeness.bus import Bus, decode, kv_get
from likeness.jobs import CONSENT_WITHDRAWN_REASON, CancelFlag, JobCancelled
from likeness.method_access import current_principal
from likeness.provisioning import CONSENT_WITHDRAWN, CONSENTS_BUCKET, withdrawals_consumer_name
from likeness.rpc_errors import abort
from likeness.timeutil import from_timestamp, utcnow
from likeness.v1 import events_pb2, retention_pb2

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[object, object]

#: Train a model of the person and render headshots from it.
HEADSHOTS = "headshots"
#: Renders in a tenant's team look (the tenant's pinned style, background and seed).
TEAM_LOOK = "team_look"
#: Instant renders: the identity adapter conditioned on one accepted photo (alone, or with a trained LoRA).
INSTANT = "instant"
PURPOSES = (HEADSHOTS, TEAM_LOOK, INSTANT)

#: `granted_by` of a grant made with the person's own token, and with a tenant-level one.
BY_SUBJECT = "subject"
BY_TENANT = "tenant"


def consent_key(tenant: str, subject_id: str) -> str:
    return f"{tenant}.{subject_id}"


def is_live(grant: retention_pb2.ConsentGrant, now: datetime) -> bool:
    """Neither withdrawn nor expired at `now`."""
    if grant.HasField("withdrawn_at"):
        return False
    expires = from_timestamp(grant.expires_at) if grant.HasField("expires_at") else None
    return expires is None or expires > now


def live_grant(
    consents: retention_pb2.SubjectConsents | None, purpose: str, now: datetime
) -> retention_pb2.ConsentGrant | None:
    """The newest live grant of `purpose`, if any."""
    if consents is None:
        return None
    for grant in reversed(consents.grants):
        if grant.purpose == purpose and is_live(grant, now):
            return grant
    return None


def render_purpose(team_look_id: str) -> str:
    """The purpose a render from a trained model needs: a team look's, or headshots."""
    return TEAM_LOOK if team_look_id else HEADSHOTS


def render_purposes(team_look_id: str, *, instant: bool, trained: bool) -> tuple[str, ...]:
    """Every purpose a render needs: an instant one uses the photo (`instant`), and a trained model too
    when it names one (its `headshots` or team-look purpose as well)."""
    if not instant:
        return (render_purpose(team_look_id),)
    if not trained and not team_look_id:
        return (INSTANT,)
    return (render_purpose(team_look_id), INSTANT)


async def read_consents(kv: KeyValue, tenant: str, subject_id: str) -> retention_pb2.SubjectConsents | None:
    """The subject's grants, if the record is the one its key names (a record that lies about whose it is
    grants nothing)."""
    found = await kv_get(kv, consent_key(tenant, subject_id), retention_pb2.SubjectConsents)
    if found is None or (found[0].tenant, found[0].subject_id) != (tenant, subject_id):
        return None
    return found[0]


class ConsentReader:
    """Reads retention's grant records (read-only), for trainer and renderer."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def live(
        self, tenant: str, subject_id: str, purpose: str, now: datetime
    ) -> retention_pb2.ConsentGrant | None:
        kv = await self.bus.kv(CONSENTS_BUCKET)
        return live_grant(await read_consents(kv, tenant, subject_id), purpose, now)


async def require_consent(
    context: Context,
    reader: ConsentReader,
    tenant: str,
    subject_id: str,
    purpose: str,
    *,
    audit: AuditTrail | None = None,
    refused_action: str = "",
) -> retention_pb2.ConsentGrant:
    """The live grant a job of `purpose` needs, else PERMISSION_DENIED `consent_required` (the gateway's
    403): checked by trainer and renderer when a job is submitted. A refusal is recorded as
    `refused_action` (`training.refused`, `render.refused`) on the person's log when `audit` is given."""
    grant = await reader.live(tenant, subject_id, purpose, utcnow())
    if grant is None:
        if audit is not None and refused_action:
            await audit.record(
                tenant,
                refused_action,
                subject_id,
                "consent_required",
                principal=audit.principal(current_principal()),
                purpose=purpose,
            )
        await abort(
            context,
            grpc.StatusCode.PERMISSION_DENIED,
            "consent_required",
            f"The person has no live consent grant for {purpose!r}; it must be granted first.",
        )
    return grant


async def check_consent_at_start(
    reader: ConsentReader, tenant: str, subject_id: str, purpose: str, flag: CancelFlag
) -> None:
    """A worker's check before it touches anything of the person: a job whose grant was withdrawn (or
    lapsed) while it queued is cancelled with `CONSENT_WITHDRAWN_REASON`, never run."""
    if await reader.live(tenant, subject_id, purpose, utcnow()) is None:
        flag.set(CONSENT_WITHDRAWN_REASON)
        raise JobCancelled(CONSENT_WITHDRAWN_REASON)


class CancellableJobs(Protocol):
    """A job service's records, as the withdrawal consumer needs them (`likeness.jobs.JobRecords`)."""

    async def cancel_open(
        self,
        tenant: str,
        subject_id: str,
        matches: Callable[[object], bool],
        reason: str,
        release_queued: Callable[[object], Awaitable[object]] | None = None,
    ) -> int: ...


async def cancel_jobs_on_withdrawal(
    bus: Bus,
    service: str,
    jobs: CancellableJobs,
    purpose_of: Callable[[object], str],
    release_queued: Callable[[object], Awaitable[object]] | None = None,
) -> None:
    """Cancels a service's queued and running jobs of a purpose when its grant is withdrawn.

    A durable consumer shared by the serve role's replicas (always up, unlike the GPU workers): each
    withdrawal is handled once, also one announced while the service was down. A running job's worker
    watches its record and stops within a step. `release_queued` (see `JobRecords.cancel_open`) frees the
    place a cancelled queued job held at once (the trainer's: the person's one active training).
    """

    async def on_withdrawn(msg: Msg) -> None:
        event = decode(msg, events_pb2.ConsentWithdrawn)
        cancelled = await jobs.cancel_open(
            event.tenant,
            event.subject_id,
            lambda record: purpose_of(record) == event.purpose,
            CONSENT_WITHDRAWN_REASON,
            release_queued,
        )
        log.info("jobs cancelled on a withdrawal", extra={"purpose": event.purpose, "jobs": cancelled})

    await bus.watch_events(CONSENT_WITHDRAWN, on_withdrawn, durable=withdrawals_consumer_name(service))
