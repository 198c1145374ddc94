"""The retention service's KV buckets, all owned by it alone.

| bucket | key | value |
|---|---|---|
| `subjects` | `<tenant>.<subject>` | Subject (schedule, consent, deadlines; a tombstone once erased) |
| `erasures` | `<tenant>.<erasure>` | Erasure (progress and facts) |
| `tenants` | `<tenant>` | RetentionSchedule the tenant chose (absent: the service defaults) |
| `deadlines` | `<tenant>.<subject>.<kind>.<resource>` | a per-object deadline (JSON, deadlines.py) |
| `leases` | `<name>` | who works on an erasure or a sweep right now (JSON, see leases.py) |
| `receipts` | `<tenant>.<erasure>` | the signed erasure receipt (JSON) |

Tests give the buckets a prefix (`kv_bucket_prefix`) to run isolated instances on shared servers.
"""

from __future__ import annotations

import logging

from nats.js.kv import KeyValue

from likeness import ids
from likeness.bus import Bus, kv_get, kv_keys, kv_records
from likeness.v1 import retention_pb2
from likeness.vault_transit import KEY_PREFIX

log = logging.getLogger(__name__)

SUBJECTS_BUCKET = "subjects"
ERASURES_BUCKET = "erasures"
TENANTS_BUCKET = "tenants"
DEADLINES_BUCKET = "deadlines"
LEASES_BUCKET = "leases"
RECEIPTS_BUCKET = "receipts"


def record_key(tenant: str, record_id: str) -> str:
    return f"{tenant}.{record_id}"


class RetentionRecords:
    def __init__(
        self,
        subjects: KeyValue,
        erasures: KeyValue,
        tenants: KeyValue,
        deadlines: KeyValue,
        leases: KeyValue,
        receipts: KeyValue,
    ) -> None:
        self.subjects = subjects
        self.erasures = erasures
        self.tenants = tenants
        self.deadlines = deadlines
        self.leases = leases
        self.receipts = receipts

    @classmethod
    async def open(cls, bus: Bus, prefix: str = "") -> RetentionRecords:
        names = (
            SUBJECTS_BUCKET,
            ERASURES_BUCKET,
            TENANTS_BUCKET,
            DEADLINES_BUCKET,
            LEASES_BUCKET,
            RECEIPTS_BUCKET,
        )
        buckets = [await bus.kv(f"{prefix}{name}") for name in names]
        return cls(*buckets)

    async def get_subject(self, tenant: str, subject_id: str) -> tuple[retention_pb2.Subject, int] | None:
        """The subject's record, if the record is the one its key names (a record whose own tenant or id
        differs from its key is never trusted: nothing is derived from a record that lies about itself)."""
        found = await kv_get(self.subjects, record_key(tenant, subject_id), retention_pb2.Subject)
        if found is not None and (found[0].tenant, found[0].id) != (tenant, subject_id):
            log.warning("a subject record does not match its key; ignored")
            return None
        return found

    async def create_subject(self, subject: retention_pb2.Subject) -> None:
        await self.subjects.create(record_key(subject.tenant, subject.id), subject.SerializeToString())

    async def update_subject(self, subject: retention_pb2.Subject, revision: int) -> int:
        """Compare-and-set: KeyWrongLastSequenceError if another writer changed it since `revision`."""
        key = record_key(subject.tenant, subject.id)
        return int(await self.subjects.update(key, subject.SerializeToString(), last=revision))

    async def all_subjects(self) -> list[tuple[retention_pb2.Subject, int]]:
        return await kv_records(self.subjects, retention_pb2.Subject)

    async def get_erasure(self, tenant: str, erasure_id: str) -> retention_pb2.Erasure | None:
        """The erasure's record, if the record is the one its key names (else None, as for get_subject)."""
        found = await kv_get(self.erasures, record_key(tenant, erasure_id), retention_pb2.Erasure)
        if found is not None and (found[0].tenant, found[0].id) != (tenant, erasure_id):
            log.warning("an erasure record does not match its key; ignored")
            return None
        return found[0] if found else None

    async def erasure_with_subject(
        self, tenant: str, erasure_id: str
    ) -> tuple[retention_pb2.Erasure, str] | None:
        """The erasure and the subject it erases, if both records agree (None otherwise).

        The subject comes from the erasure's key name (`likeness-subject-<id>`), and is trusted only when
        that subject's own record (kept as a tombstone once erased) names this erasure: the subject record
        is switched to ERASING with the erasure's id before the erasure record is ever written, so a real
        erasure always passes, and a forged or mismatched erasure record names no key retention will
        destroy, no prefix it will delete and no receipt it will sign.
        """
        erasure = await self.get_erasure(tenant, erasure_id)
        if erasure is None:
            return None
        subject_id = erasure.key_name.removeprefix(KEY_PREFIX)
        if not erasure.key_name.startswith(KEY_PREFIX) or not ids.is_valid_id(subject_id, "sub"):
            log.warning("an erasure record names no subject key; ignored", extra={"erasure_id": erasure_id})
            return None
        found = await self.get_subject(tenant, subject_id)
        if found is None or found[0].erasure_id != erasure.id:
            log.warning("an erasure its subject does not name; ignored", extra={"erasure_id": erasure_id})
            return None
        return erasure, subject_id

    async def put_erasure(self, erasure: retention_pb2.Erasure) -> None:
        await self.erasures.put(record_key(erasure.tenant, erasure.id), erasure.SerializeToString())

    async def all_subject_keys(self) -> list[str]:
        return await kv_keys(self.subjects, "")

    async def all_erasures(self) -> list[retention_pb2.Erasure]:
        return [erasure for erasure, _ in await kv_records(self.erasures, retention_pb2.Erasure)]
