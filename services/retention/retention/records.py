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

from nats.js.kv import KeyValue

from likeness.bus import Bus, kv_get, kv_keys, kv_records
from likeness.v1 import retention_pb2

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
        return await kv_get(self.subjects, record_key(tenant, subject_id), retention_pb2.Subject)

    async def create_subject(self, subject: retention_pb2.Subject) -> None:
        await self.subjects.create(record_key(subject.tenant, subject.id), subject.SerializeToString())

    async def update_subject(self, subject: retention_pb2.Subject, revision: int) -> int:
        """Compare-and-set: KeyWrongLastSequenceError if another writer changed it since `revision`."""
        key = record_key(subject.tenant, subject.id)
        return int(await self.subjects.update(key, subject.SerializeToString(), last=revision))

    async def all_subjects(self) -> list[tuple[retention_pb2.Subject, int]]:
        return await kv_records(self.subjects, retention_pb2.Subject)

    async def get_erasure(self, tenant: str, erasure_id: str) -> retention_pb2.Erasure | None:
        found = await kv_get(self.erasures, record_key(tenant, erasure_id), retention_pb2.Erasure)
        return found[0] if found else None

    async def put_erasure(self, erasure: retention_pb2.Erasure) -> None:
        await self.erasures.put(record_key(erasure.tenant, erasure.id), erasure.SerializeToString())

    async def all_subject_keys(self) -> list[str]:
        return await kv_keys(self.subjects, "")

    async def all_erasures(self) -> list[retention_pb2.Erasure]:
        return [erasure for erasure, _ in await kv_records(self.erasures, retention_pb2.Erasure)]
