"""Per-item deletion (issue 16), the owner's half: mark the record, then forget it once purged.

A person deletes one photo, one training's model, one render or one image. The service owning the record
verifies the caller's token and marks the record (`deletion_requested_at`): from then on every read hides
it, as if it were gone. Retention then removes every stored version of the item (`PurgeItem`, the only
identity allowed to), and only then does the owner audit the deletion (once) and forget the record.

Every step is idempotent, so a retry of the whole deletion is safe; a crash between two steps leaves a
hidden record whose retry finishes the work, never an item that is listed while its objects are gone. A
job still queued or running is refused (`JobBusy`): cancel it first, so no worker writes an object of
the item after its purge. This is not a crypto-erase: the subject's key still opens a restored backup of
the item until erasure destroys the key or the backup expires, and the answer and the audit record say so.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from likeness.audit import AuditTrailFull
from likeness.jobs import TERMINAL, JobRecords
from likeness.rpc_errors import abort
from likeness.timeutil import now_timestamp

#: What the audit record of a per-item deletion says, and what the answer spells out (see module docstring).
NOT_A_CRYPTO_ERASE = "not_a_crypto_erase"
MARK_FIELD = "deletion_requested_at"

R = TypeVar("R", bound=Message)
Context = grpc.aio.ServicerContext[object, object]


class ItemNotFound(LookupError):
    """No such item (or one the caller may not see)."""


class JobBusy(RuntimeError):
    """The job is still queued or running: cancel it, then delete it."""


class NotMarked(RuntimeError):
    """A confirmation for a record whose deletion was never started: nothing was purged for it."""


def is_marked(record: Message) -> bool:
    """Whether a per-item deletion of this record has begun (readers then hide it)."""
    return record.HasField(MARK_FIELD)


def visible(records: list[R]) -> list[R]:
    """The records that no per-item deletion has begun on."""
    return [record for record in records if not is_marked(record)]


async def mark_job(records: JobRecords[R], tenant: str, job_id: str) -> R:
    """Marks a finished job's record for deletion (a second call finds it marked and changes nothing)."""

    def mark(record: R) -> bool:
        if is_marked(record):
            return False
        if getattr(record, "status") not in TERMINAL:  # noqa: B009 - R is a job record
            raise JobBusy(job_id)
        getattr(record, MARK_FIELD).CopyFrom(now_timestamp())
        return True

    marked = await records.mutate(tenant, job_id, mark)
    if marked is None:
        raise ItemNotFound(job_id)
    return marked


async def marked_job(records: JobRecords[R], tenant: str, job_id: str) -> R:
    """The job's record, if its deletion has begun (NotMarked otherwise: nothing was purged for it)."""
    found = await records.get(tenant, job_id)
    if found is None:
        raise ItemNotFound(job_id)
    if not is_marked(found[0]):
        raise NotMarked(job_id)
    return found[0]


async def forget_job(records: JobRecords[R], tenant: str, job_id: str) -> None:
    """Forgets the job's record for good: every revision goes, a purge marker keyed by the job's id (no
    person's id: job buckets are keyed `<tenant>.<job>`) stays, as erasure leaves them."""
    await records.kv.purge(records.key(tenant, job_id))


def deletion_once_key(item_id: str) -> str:
    """The audit record's dedup key: a retried confirmation inside the dedup window records nothing new."""
    return item_id


async def audited(context: Context, recording: Awaitable[None]) -> None:
    """Writes the deletion's audit record before the record goes; a full trail refuses the confirmation
    (503 at the gateway), so the deletion is never finished unrecorded, and a retry finishes it."""
    try:
        await recording
    except AuditTrailFull:
        await abort(
            context,
            grpc.StatusCode.UNAVAILABLE,
            "audit_trail_full",
            "The audit trail is full; the operator has been alerted. Try again later.",
        )
