"""The audit trail (stream LIKENESS_AUDIT): who did what to which subject, when, with what outcome.

Records name the subject only as a keyed HMAC, so the trail can outlive the data without holding a person.
Every field is checked on the way in: an action and an outcome are short dotted words, a resource is one
of our own ids (`pho_…`, `trn_…`, `era_…`) or empty, so a caller cannot slip a name, a reference or a
path into the trail by mistake.

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
"""

from __future__ import annotations

import logging
import re

from likeness.bus import Bus, audit_nats_subject
from likeness.hashing import keyed_hmac
from likeness.ids import ID_PATTERN, is_valid_tenant
from likeness.timeutil import SYSTEM_CLOCK, Clock, now_timestamp
from likeness.v1 import events_pb2

log = logging.getLogger(__name__)

_WORD = re.compile(r"^[a-z][a-z_]{0,39}(?:\.[a-z][a-z_]{0,39}){0,3}$")


class AuditTrail:
    def __init__(self, bus: Bus, hmac_secret: str, actor: str, clock: Clock = SYSTEM_CLOCK) -> None:
        if not _WORD.match(actor):
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
        if not _WORD.match(action) or not _WORD.match(outcome):
            raise ValueError("audit actions and outcomes are short dotted words")
        if resource_id and not ID_PATTERN.match(resource_id):
            raise ValueError("an audited resource is one of our ids")
        if subject_id and not ID_PATTERN.match(subject_id):
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
        await self._bus.publish(audit_nats_subject(tenant, action.replace(".", "_")), record)

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
