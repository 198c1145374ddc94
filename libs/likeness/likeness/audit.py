"""The audit trail (stream LIKENESS_AUDIT): who did what to which subject, when, with what outcome.

Records name the subject only as a keyed HMAC, so the trail can outlive the data without holding a person.
Every field is checked on the way in: an action and an outcome are short dotted words, a resource is one
of our own ids (`pho_…`, `trn_…`, `era_…`) or empty, so a caller cannot slip a name, a reference or a
path into the trail by mistake.

The stream refuses deletes and purges, and has a byte bound past which it refuses new records instead of
dropping old ones (`likeness.provisioning`): a refused record is `AuditTrailFull`, logged as an error, and
the action it records fails with it (`record_quietly` paths go on, as for any failed publish).

Actions (the subject is `audit.<tenant>.<action with _ for .>`):

| action | who | when |
|---|---|---|
| `subject.opened` / `subject.read` | retention | a subject is opened / its record is read |
| `subject.erase_requested` | retention | erasure accepted (resource: the erasure) |
| `subject.key_destroyed` | retention | the subject's Vault key is gone (crypto-erase) |
| `subject.erased` | retention | objects, records and events of the subject are gone |
| `receipt.issued` | retention | a signed erasure receipt was issued |
| `data.deleted` | retention | objects of one kind reached their deadline (resource: photo/training/render) |
| `orphan.objects_deleted` / `orphan.key_destroyed` | retention | orphan sweep |
| `policy.changed` | retention | a tenant's retention schedule changed (no subject) |
| `photo.stored`, `photos.read`, `model.stored` | the data's owner | data of the subject is written or read |
| `model.read`, `render.stored`, `render.read` | the data's owner | (decrypted) |
| `call.denied` | the service called | a gRPC call was refused by caller authorization (`CallAudit`) |

A `call.denied` record belongs to no tenant and no subject (the call was refused before its request was
read): its actor is the refused caller's identity, its resource the full gRPC method, and its NATS subject
`audit._mesh.call_denied` (no tenant id can start with `_`).
"""

from __future__ import annotations

import logging
import re

import nats.js.errors

from likeness.bus import Bus, audit_nats_subject
from likeness.hashing import keyed_hmac
from likeness.ids import is_any_id, is_valid_tenant
from likeness.timeutil import SYSTEM_CLOCK, Clock, now_timestamp
from likeness.v1 import events_pb2

log = logging.getLogger(__name__)

_WORD = re.compile(r"^[a-z][a-z_]{0,39}(?:\.[a-z][a-z_]{0,39}){0,3}$")
#: nats-server's answer to a write into a stream at its bound with `DiscardNew` ("maximum bytes/messages
#: exceeded"): JSStreamStoreFailedF.
_STORE_FAILED = 10077


class AuditTrailFull(RuntimeError):
    """LIKENESS_AUDIT is at its size bound and refused the record (part P: `DiscardNew`, so nothing old was
    dropped to make room). The action that wanted it recorded fails closed; an operator raises the bound."""

    def __init__(self, action: str) -> None:
        super().__init__(
            f"the audit stream is full and refused the {action!r} record: nothing was recorded; raise its "
            "byte bound (an operator's `likeness bootstrap --tighten-audit` with a larger bound)"
        )


async def publish_audit_record(bus: Bus, nats_subject: str, record: events_pb2.AuditRecord) -> None:
    """Publishes one audit record; a full audit stream is `AuditTrailFull`, reported as an error."""
    try:
        await bus.publish(nats_subject, record)
    except nats.js.errors.APIError as error:
        if error.err_code != _STORE_FAILED or "exceeded" not in str(error.description or ""):
            raise
        log.error("audit stream full: record refused, nothing recorded", extra={"action": record.action})
        raise AuditTrailFull(record.action) from None


class AuditTrail:
    def __init__(self, bus: Bus, hmac_secret: str, actor: str, clock: Clock = SYSTEM_CLOCK) -> None:
        if not _WORD.fullmatch(actor):
            raise ValueError("an audit actor is a service name")
        self._bus = bus
        self._secret = hmac_secret
        self._actor = actor
        self._clock = clock

    def subject_hmac(self, tenant: str, subject_id: str) -> str:
        return keyed_hmac(self._secret, "subject", tenant, subject_id)

    def build(
        self, tenant: str, action: str, subject_id: str, outcome: str, resource_id: str = ""
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
        return events_pb2.AuditRecord(
            tenant=tenant,
            action=action,
            subject_hmac=self.subject_hmac(tenant, subject_id) if subject_id else "",
            actor=self._actor,
            outcome=outcome,
            resource_id=resource_id,
            at=now_timestamp(self._clock),
        )

    async def record(
        self, tenant: str, action: str, subject_id: str, outcome: str, resource_id: str = ""
    ) -> None:
        """Publishes one record; `subject_id` may be empty for tenant-wide actions (a policy change)."""
        record = self.build(tenant, action, subject_id, outcome, resource_id)
        await publish_audit_record(self._bus, audit_nats_subject(tenant, action.replace(".", "_")), record)

    async def record_quietly(
        self, tenant: str, action: str, subject_id: str, outcome: str, resource_id: str = ""
    ) -> bool:
        """Like `record`, for paths that must go on while NATS is briefly away (erasure retries): a failed
        publish is logged, never raised. Returns whether it was published."""
        try:
            await self.record(tenant, action, subject_id, outcome, resource_id)
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
        )

    async def denied(self, peer: str, method: str) -> None:
        record = self.build(peer, method)
        subject = audit_nats_subject(NO_TENANT_TOKEN, self.ACTION.replace(".", "_"))
        await publish_audit_record(self._bus, subject, record)
