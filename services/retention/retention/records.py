"""The retention service's KV buckets, all owned by it alone.

| bucket | key | value |
|---|---|---|
| `subjects` | `<tenant>.<subject>` | Subject (schedule, consent, deadlines) while live or being erased |
| `subjects` | `<tenant>.erased.<subject_hmac>` | an erased subject's tombstone: status and erasure id only |
| `erasures` | `<tenant>.<erasure>` | Erasure (progress and facts) |
| `tenants` | `<tenant>` | RetentionSchedule the tenant chose (absent: the service defaults) |
| `deadlines` | `<tenant>.<subject>.<kind>.<resource>` | a per-object deadline (JSON, deadlines.py) |
| `leases` | `<name>` | who works on an erasure or a sweep right now (JSON, see leases.py) |
| `receipts` | `<tenant>.<erasure>` | the signed erasure receipt (JSON) |
| `consents` | `<tenant>.<subject>` | SubjectConsents: every grant of the subject (`retention.consents`) |
| `subject_order` | `<tenant>.<subject>` | nothing: written once, when the subject is opened (below) |

`subject_order`'s stream thus holds each tenant's subjects in the order they were opened: `ListSubjects`
reads a page from it (`likeness.creation_order`) instead of every record of the tenant.

`tenants` also holds each tenant's ConsentPolicy, under `<tenant>.consent_policy` (a tenant id has no dot).
Trainer and renderer read `consents` (key by key, never writing): the grant checks of `likeness.consent`.

Once erased, nothing kept names the subject in clear: the live record is forgotten without a marker
(`likeness.bus.kv_forget`) and the tombstone is keyed by the subject's keyed HMAC (which only retention's
secret computes), so a later read of the subject still answers "erased" (410) rather than "unknown".

Tests give the buckets a prefix (`kv_bucket_prefix`) to run isolated instances on shared servers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from nats.js.kv import KeyValue

from likeness import ids
from likeness.bus import Bus, kv_forget, kv_get, kv_keys, kv_records
from likeness.creation_order import CreationOrder
from likeness.v1 import retention_pb2
from likeness.vault_transit import KEY_PREFIX

log = logging.getLogger(__name__)

SUBJECTS_BUCKET = "subjects"
ERASURES_BUCKET = "erasures"
TENANTS_BUCKET = "tenants"
DEADLINES_BUCKET = "deadlines"
LEASES_BUCKET = "leases"
RECEIPTS_BUCKET = "receipts"
CONSENTS_BUCKET = "consents"
SUBJECT_ORDER_BUCKET = "subject_order"


def record_key(tenant: str, record_id: str) -> str:
    return f"{tenant}.{record_id}"


def tombstone_key(tenant: str, subject_hmac: str) -> str:
    """Where an erased subject's tombstone is kept: under its keyed HMAC, never its id."""
    return f"{tenant}.erased.{subject_hmac}"


class RetentionRecords:
    def __init__(
        self,
        subjects: KeyValue,
        erasures: KeyValue,
        tenants: KeyValue,
        deadlines: KeyValue,
        leases: KeyValue,
        receipts: KeyValue,
        consents: KeyValue,
        subject_order: KeyValue,
    ) -> None:
        self.subjects = subjects
        self.erasures = erasures
        self.tenants = tenants
        self.deadlines = deadlines
        self.leases = leases
        self.receipts = receipts
        #: The subject's keyed HMAC (tenant, subject id): what tombstones are keyed by. Set by the eraser
        #: (the audit trail's); without it, erased subjects read as absent.
        self.subject_hmac: Callable[[str, str], str] | None = None
        self.consents = consents
        #: Each tenant's subject ids in the order they were opened (pages of `ListSubjects`).
        self.subject_order = CreationOrder(subject_order)

    @classmethod
    async def open(cls, bus: Bus, prefix: str = "") -> RetentionRecords:
        names = (
            SUBJECTS_BUCKET,
            ERASURES_BUCKET,
            TENANTS_BUCKET,
            DEADLINES_BUCKET,
            LEASES_BUCKET,
            RECEIPTS_BUCKET,
            CONSENTS_BUCKET,
            SUBJECT_ORDER_BUCKET,
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
        if found is None and self.subject_hmac is not None:
            tombstone = await self.get_tombstone(tenant, self.subject_hmac(tenant, subject_id))
            if tombstone is not None:
                # The caller named the subject; the id is filled in here, never stored.
                erased = retention_pb2.Subject()
                erased.CopyFrom(tombstone[0])
                erased.id = subject_id
                return erased, tombstone[1]
        return found

    async def get_tombstone(self, tenant: str, subject_hmac: str) -> tuple[retention_pb2.Subject, int] | None:
        found = await kv_get(self.subjects, tombstone_key(tenant, subject_hmac), retention_pb2.Subject)
        if found is not None and (found[0].tenant, found[0].id) != (tenant, ""):
            log.warning("a tombstone does not match its key; ignored")
            return None
        return found

    async def put_tombstone(self, tenant: str, subject_hmac: str, erasure_id: str) -> None:
        tombstone = retention_pb2.Subject(
            tenant=tenant, status=retention_pb2.SubjectStatus.SUBJECT_STATUS_ERASED, erasure_id=erasure_id
        )
        await self.subjects.put(tombstone_key(tenant, subject_hmac), tombstone.SerializeToString())

    async def forget_subject(self, tenant: str, subject_id: str) -> None:
        """Removes the subject's live record and every revision of it, leaving no key that names them."""
        await kv_forget(self.subjects, record_key(tenant, subject_id))
        await self.subject_order.forget(tenant, subject_id)

    async def create_subject(self, subject: retention_pb2.Subject) -> None:
        # The order first: a record is never left unlisted (an entry whose record never came is skipped).
        await self.subject_order.add(subject.tenant, subject.id)
        await self.subjects.create(record_key(subject.tenant, subject.id), subject.SerializeToString())

    async def order_existing_subjects(self) -> int:
        """Fills an empty `subject_order` from the subject records, oldest first (the first start after
        an upgrade that brought it); returns how many subjects it ordered. Replicas starting together add each
        id once (`CreationOrder.add` creates, never rewrites)."""
        if not await self.subject_order.is_empty():
            return 0
        keys = sorted(key.partition(".")[::2] for key in await kv_keys(self.subjects, ""))
        ordered = 0
        for tenant, subject_id in keys:
            if ids.is_valid_id(subject_id, "sub") and await self.get_subject(tenant, subject_id) is not None:
                await self.subject_order.add(tenant, subject_id)
                ordered += 1
        return ordered

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
        """The erasure and the subject it erases, if both records agree (None otherwise; "" for the subject
        of a completed erasure, which no kept record names).

        The subject comes from the erasure's key name (`likeness-subject-<id>`), and is trusted only when
        that subject's own record (kept as a tombstone once erased) names this erasure: the subject record
        is switched to ERASING with the erasure's id before the erasure record is ever written, so a real
        erasure always passes, and a forged or mismatched erasure record names no key retention will
        destroy, no prefix it will delete and no receipt it will sign.
        """
        erasure = await self.get_erasure(tenant, erasure_id)
        if erasure is None:
            return None
        if erasure.status == retention_pb2.ErasureStatus.ERASURE_STATUS_COMPLETED and not erasure.key_name:
            # A completed erasure no longer names its subject: its tombstone (keyed by the same HMAC) must
            # name it back. The subject id is then "" (callers match a token against `subject_hmac`).
            tombstone = await self.get_tombstone(tenant, erasure.subject_hmac)
            if tombstone is None or tombstone[0].erasure_id != erasure.id:
                log.warning(
                    "a completed erasure no tombstone names; ignored", extra={"erasure_id": erasure_id}
                )
                return None
            return erasure, ""
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
