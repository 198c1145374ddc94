"""The audit trail (stream LIKENESS_AUDIT): who did what to which subject, when, with what outcome.

Records name the subject only as a keyed HMAC, so the trail can outlive the data without holding a person.
"""

from __future__ import annotations

import logging

from likeness.bus import Bus, audit_subject
from likeness.hashing import keyed_hmac
from likeness.timeutil import now_timestamp
from likeness.v1 import events_pb2

log = logging.getLogger(__name__)


class AuditTrail:
    def __init__(self, bus: Bus, hmac_secret: str, actor: str) -> None:
        self._bus = bus
        self._secret = hmac_secret
        self._actor = actor

    def subject_hmac(self, tenant: str, subject_id: str) -> str:
        return keyed_hmac(self._secret, "subject", tenant, subject_id)

    async def record(
        self, tenant: str, action: str, subject_id: str, outcome: str, resource_id: str = ""
    ) -> None:
        record = events_pb2.AuditRecord(
            tenant=tenant,
            action=action,
            subject_hmac=self.subject_hmac(tenant, subject_id),
            actor=self._actor,
            outcome=outcome,
            resource_id=resource_id,
            at=now_timestamp(),
        )
        await self._bus.publish(audit_subject(tenant, action.replace(".", "_")), record)
