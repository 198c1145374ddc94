"""The retention service's KV buckets: `subjects` and `erasures`, keyed `<tenant>.<id>`."""

from __future__ import annotations

from nats.js.kv import KeyValue

from likeness.bus import Bus, kv_get, kv_keys
from likeness.v1 import retention_pb2

SUBJECTS_BUCKET = "subjects"
ERASURES_BUCKET = "erasures"


def record_key(tenant: str, record_id: str) -> str:
    return f"{tenant}.{record_id}"


class RetentionRecords:
    def __init__(self, subjects: KeyValue, erasures: KeyValue) -> None:
        self.subjects = subjects
        self.erasures = erasures

    @classmethod
    async def open(cls, bus: Bus) -> RetentionRecords:
        return cls(await bus.kv(SUBJECTS_BUCKET), await bus.kv(ERASURES_BUCKET))

    async def get_subject(self, tenant: str, subject_id: str) -> tuple[retention_pb2.Subject, int] | None:
        return await kv_get(self.subjects, record_key(tenant, subject_id), retention_pb2.Subject)

    async def create_subject(self, subject: retention_pb2.Subject) -> None:
        await self.subjects.create(record_key(subject.tenant, subject.id), subject.SerializeToString())

    async def update_subject(self, subject: retention_pb2.Subject, revision: int) -> int:
        """Compare-and-set: fails if another writer changed the record since `revision`."""
        key = record_key(subject.tenant, subject.id)
        return int(await self.subjects.update(key, subject.SerializeToString(), last=revision))

    async def get_erasure(self, tenant: str, erasure_id: str) -> retention_pb2.Erasure | None:
        found = await kv_get(self.erasures, record_key(tenant, erasure_id), retention_pb2.Erasure)
        return found[0] if found else None

    async def put_erasure(self, erasure: retention_pb2.Erasure) -> None:
        await self.erasures.put(record_key(erasure.tenant, erasure.id), erasure.SerializeToString())

    async def all_subject_keys(self) -> list[str]:
        return await kv_keys(self.subjects, "")

    async def all_erasures(self) -> list[retention_pb2.Erasure]:
        erasures = []
        for key in await kv_keys(self.erasures, ""):
            found = await kv_get(self.erasures, key, retention_pb2.Erasure)
            if found:
                erasures.append(found[0])
        return erasures
