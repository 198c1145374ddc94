"""The audit trail (stream LIKENESS_AUDIT): who did what to which person's data, when, for which purpose,
with what outcome. The service that holds the data writes the record, once per access.

Records name the person only by a pseudonym: a keyed HMAC of tenant and subject under a secret of the audit
trail alone (`audit_pseudonym_secret`, mounted in ingest, trainer, renderer and retention, never the
gateway), so the trail can outlive the data without holding a person. Every field is checked on the way
in: an action, an outcome and a notice are short dotted words, a purpose is one of `PURPOSES`, a principal
one of the shapes `principal_label` makes, a resource one of our own ids (`pho_…`, `trn_…`, `era_…`) or
empty, so a caller cannot slip a name, a reference or a path into the trail by mistake.

The NATS subject is `audit.<tenant>.<pseudonym or _>.<action with _ for .>`: one person's processing log
is a filtered read of `audit.<tenant>.<pseudonym>.>` (no scan of the whole trail), and each service may
publish only its own actions (`likeness.provisioning.AUDIT_ACTIONS`).

The stream refuses deletes and purges, and has a byte bound past which it refuses new records instead of
dropping old ones (`likeness.provisioning`): a refused record is `AuditTrailFull`, logged as an error, and
the action it records fails with it (`record_quietly` paths go on, as for any failed publish).

Actions, who writes them and when (status reads, such as GetSubject, GetTraining, GetRender and listings,
are not accesses to personal data and write nothing):

| action | who | when |
|---|---|---|
| `photo.stored` | ingest | an upload was accepted and stored (resource: the photo) |
| `photos.exported`, `templates.exported` | ingest | an export decrypted the photos / face templates |
| `photo.deleted` | ingest | per-item deletion of a photo (notice `not_a_crypto_erase`) |
| `photos.decrypted` | trainer-worker | a training attempt decrypted the photos (resource: the training) |
| `training.refused` | trainer | a submitted training was refused (no live consent) |
| `model.exported`, `model.deleted` | trainer | export of a LoRA (and its templates); per-item deletion |
| `model.decrypted` | renderer-worker | a render attempt decrypted the LoRA (resource: the render) |
| `photo.decrypted` | renderer-worker | an instant render decrypted its one photo (resource: the render) |
| `render.refused` | renderer | a submitted render was refused (no live consent) |
| `image.downloaded` | renderer | one image was fetched (purpose `access`, or `export`) |
| `image.rejected`, `render.deleted` | renderer | the person rejected an image; per-item deletion |
| `subject.opened` | retention | a subject is opened |
| `consent.granted`, `consent.withdrawn`, `consent.refused` | retention | a grant; its withdrawal; a refusal |
| `subject.erase_requested` | retention | erasure accepted (resource: the erasure) |
| `subject.key_destroyed` | retention | the subject's Vault key is gone (crypto-erase) |
| `subject.erased` | retention | objects, records and events of the subject are gone |
| `receipt.issued` | retention | a signed erasure receipt was issued |
| `data.deleted` | retention | objects of one kind reached their deadline |
| `orphan.objects_deleted` / `orphan.key_destroyed` | retention | orphan sweep |
| `policy.changed` | retention | a tenant's retention or consent policy changed (no subject) |
| `subject.exported`, `subject.rectified` | retention | export of record, consents and log; rectification |
| `access.denied` | retention | a token was refused on an existing subject it may not touch |
| `call.denied` | the service called | a gRPC call was refused by caller authorization (`CallAudit`) |

A `call.denied` record belongs to no tenant and no subject (the call was refused before its request was
read): its actor is the refused caller's identity, its resource the full gRPC method, and its NATS subject
`audit._mesh._.call_denied` (no tenant id can start with `_`).
"""

from __future__ import annotations

import logging
import re

import nats.js.errors

from likeness.bus import Bus, audit_nats_subject
from likeness.hashing import keyed_hmac
from likeness.ids import is_any_id, is_valid_tenant
from likeness.timeutil import SYSTEM_CLOCK, Clock, now_timestamp
from likeness.user_tokens import Principal
from likeness.v1 import events_pb2

log = logging.getLogger(__name__)

_WORD = re.compile(r"^[a-z][a-z_]{0,39}(?:\.[a-z][a-z_]{0,39}){0,3}$")
#: nats-server's answer to a write into a stream at its bound with `DiscardNew` ("maximum bytes/messages
#: exceeded"): JSStreamStoreFailedF.
_STORE_FAILED = 10077

#: Why data was touched: a consent purpose (`likeness.consent.PURPOSES`, repeated here because that module
#: imports this one; a unit test keeps them equal), or one of the person's rights and the platform's duties.
CONSENT_PURPOSES = ("headshots", "team_look", "instant")
PURPOSES = frozenset(
    {*CONSENT_PURPOSES, "export", "erasure", "retention", "review", "rectification", "deletion", "access"}
)
SUBJECT_PRINCIPAL = "subject"
TENANT_PRINCIPAL = "tenant"
#: An OAuth client id kept in a principal: a back end's name, never an address (`@`) or a path.
_CLIENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_SERVICE_IDENTITY = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_PRINCIPAL = re.compile(
    r"^(?:subject|tenant|tenant:[A-Za-z0-9][A-Za-z0-9._:-]{0,63}|service:[a-z][a-z0-9-]{0,62})$"
)
#: The pseudonym token of records about no person (a tenant's policy change, a refused call).
NO_SUBJECT_TOKEN = "_"  # noqa: S105 - a NATS subject token, not a secret


def principal_label(principal: Principal | None, service: str) -> str:
    """Who acted, in words that never name a person: `subject` (the person's own token), `tenant` or
    `tenant:<client>` (a tenant's back end, by its OAuth client when it names one harmlessly), or
    `service:<service>` when no user token is behind the work (a worker, the reaper)."""
    if principal is None:
        if not _SERVICE_IDENTITY.fullmatch(service):
            raise ValueError("a service principal is a service identity")
        return f"service:{service}"
    if principal.subject is not None:
        return SUBJECT_PRINCIPAL
    if principal.client and _CLIENT.fullmatch(principal.client):
        return f"{TENANT_PRINCIPAL}:{principal.client}"
    return TENANT_PRINCIPAL


class AuditTrailFull(RuntimeError):
    """LIKENESS_AUDIT is at its size bound and refused the record (part P: `DiscardNew`, so nothing old was
    dropped to make room). The action that wanted it recorded fails closed; an operator raises the bound."""

    def __init__(self, action: str) -> None:
        super().__init__(
            f"the audit stream is full and refused the {action!r} record: nothing was recorded; raise its "
            "byte bound (an operator's `likeness bootstrap --tighten-audit` with a larger bound)"
        )


async def publish_audit_record(
    bus: Bus, nats_subject: str, record: events_pb2.AuditRecord, msg_id: str | None = None
) -> None:
    """Publishes one audit record; a full audit stream is `AuditTrailFull`, reported as an error."""
    try:
        await bus.publish(nats_subject, record, msg_id=msg_id)
    except nats.js.errors.APIError as error:
        if error.err_code != _STORE_FAILED or "exceeded" not in str(error.description or ""):
            raise
        log.error("audit stream full: record refused, nothing recorded", extra={"action": record.action})
        raise AuditTrailFull(record.action) from None


def check_record_words(principal: str, purpose: str, notice: str) -> None:
    """`ValueError` unless principal, purpose and notice have the fixed shapes (nothing personal fits)."""
    if principal and not _PRINCIPAL.fullmatch(principal):
        raise ValueError("an audit principal is subject, tenant[:<client>] or service:<identity>")
    if purpose and purpose not in PURPOSES:
        raise ValueError(f"an audit purpose is one of {', '.join(sorted(PURPOSES))}")
    if notice and not _WORD.fullmatch(notice):
        raise ValueError("an audit notice is a short dotted word")


class AuditTrail:
    """One service's writer of audit records. `pseudonym_secret` is the audit pseudonym secret
    (`audit_pseudonym_secret`), the same in every service, so one person's records share one pseudonym."""

    def __init__(self, bus: Bus, pseudonym_secret: str, actor: str, clock: Clock = SYSTEM_CLOCK) -> None:
        if not _WORD.fullmatch(actor.replace("-", "_")):
            raise ValueError("an audit actor is a service name")
        self._bus = bus
        self._secret = pseudonym_secret
        self._actor = actor
        self._clock = clock

    @property
    def actor(self) -> str:
        return self._actor

    def subject_hmac(self, tenant: str, subject_id: str) -> str:
        """The person's pseudonym in the trail (the `subject_hmac` of their records)."""
        return keyed_hmac(self._secret, "subject", tenant, subject_id)

    def principal(self, principal: Principal | None) -> str:
        """`principal_label` for this service (`service:<actor>` when no token is behind the work)."""
        return principal_label(principal, self._actor)

    def build(
        self,
        tenant: str,
        action: str,
        subject_id: str,
        outcome: str,
        resource_id: str = "",
        *,
        principal: str = "",
        purpose: str = "",
        notice: str = "",
    ) -> events_pb2.AuditRecord:
        """The record as it will be published (checked: nothing personal can be in it)."""
        if not is_valid_tenant(tenant):
            raise ValueError("an audited tenant is a tenant id")
        if not _WORD.fullmatch(action) or not _WORD.fullmatch(outcome):
            raise ValueError("audit actions and outcomes are short dotted words")
        if resource_id and not is_any_id(resource_id):
            raise ValueError("an audited resource is one of our ids")
        if subject_id and not is_any_id(subject_id):
            raise ValueError("an audited subject is a subject id")
        check_record_words(principal, purpose, notice)
        return events_pb2.AuditRecord(
            tenant=tenant,
            action=action,
            subject_hmac=self.subject_hmac(tenant, subject_id) if subject_id else "",
            actor=self._actor,
            outcome=outcome,
            resource_id=resource_id,
            at=now_timestamp(self._clock),
            principal=principal or f"service:{self._actor}",
            purpose=purpose,
            notice=notice,
        )

    async def record(
        self,
        tenant: str,
        action: str,
        subject_id: str,
        outcome: str,
        resource_id: str = "",
        *,
        principal: str = "",
        purpose: str = "",
        notice: str = "",
        once_key: str = "",
    ) -> None:
        """Publishes one record; `subject_id` may be empty for tenant-wide actions (a policy change).
        `principal` defaults to `service:<actor>`. `once_key` (our ids and words only) makes a repeated
        publish of the same access one record: the stream's `Nats-Msg-Id` deduplication, within its
        window, for a retried call or a job whose attempt is redelivered at once."""
        record = self.build(
            tenant,
            action,
            subject_id,
            outcome,
            resource_id,
            principal=principal,
            purpose=purpose,
            notice=notice,
        )
        nats_subject = audit_nats_subject(tenant, record.subject_hmac or NO_SUBJECT_TOKEN, action)
        msg_id = f"{action}:{once_key}" if once_key else None
        await publish_audit_record(self._bus, nats_subject, record, msg_id=msg_id)

    async def record_quietly(
        self,
        tenant: str,
        action: str,
        subject_id: str,
        outcome: str,
        resource_id: str = "",
        *,
        principal: str = "",
        purpose: str = "",
        notice: str = "",
        once_key: str = "",
    ) -> bool:
        """Like `record`, for paths that must go on while NATS is briefly away (erasure retries): a failed
        publish is logged, never raised. Returns whether it was published."""
        try:
            await self.record(
                tenant,
                action,
                subject_id,
                outcome,
                resource_id,
                principal=principal,
                purpose=purpose,
                notice=notice,
                once_key=once_key,
            )
        except ValueError:
            raise
        except Exception:
            log.warning("audit record not published", extra={"action": action})
            return False
        return True


#: The tenant token of the NATS subject of records that belong to no tenant (never a tenant id).
NO_TENANT_TOKEN = "_mesh"  # noqa: S105 - a NATS subject token, not a secret
_IDENTITY = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_GRPC_METHOD = re.compile(r"^(?:/[A-Za-z_][A-Za-z0-9_.]{0,127}/[A-Za-z_][A-Za-z0-9_]{0,63}|unknown)$")


class CallAudit:
    """Records of gRPC calls refused by caller authorization (`likeness.grpc_callers`): who called which
    method, refused. They carry no subject, so they need no HMAC secret."""

    ACTION = "call.denied"

    def __init__(self, bus: Bus, clock: Clock = SYSTEM_CLOCK) -> None:
        self._bus = bus
        self._clock = clock

    def build(self, peer: str, method: str) -> events_pb2.AuditRecord:
        if not _IDENTITY.fullmatch(peer) or not _GRPC_METHOD.fullmatch(method):
            raise ValueError("a refused call is recorded by caller identity and gRPC method only")
        return events_pb2.AuditRecord(
            action=self.ACTION,
            actor=peer,
            outcome="permission_denied",
            resource_id=method,
            at=now_timestamp(self._clock),
            principal=f"service:{peer}",
        )

    async def denied(self, peer: str, method: str) -> None:
        record = self.build(peer, method)
        subject = audit_nats_subject(NO_TENANT_TOKEN, NO_SUBJECT_TOKEN, self.ACTION)
        await publish_audit_record(self._bus, subject, record)
