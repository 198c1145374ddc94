"""Per-object deadlines in the `deadlines` KV bucket: what to delete of a subject, and when.

One record per photo, training and render (`<tenant>.<subject>.<kind>.<resource>`), created from the domain
events, deleted once carried out. A replica carries one out only after claiming it with compare-and-set
(holder and claim expiry written at the revision it read); a live claim is never taken, not even by the
replica holding it, so no deadline is carried out twice, and a claim left by a replica that died expires and
is taken over, so none is missed.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from likeness import ids
from likeness.bus import kv_entries, kv_forget, kv_get_bytes
from likeness.object_names import subject_prefix
from likeness.timeutil import from_rfc3339, to_rfc3339

log = logging.getLogger(__name__)
_CONFLICTS = (nats.js.errors.KeyWrongLastSequenceError,)


class DeadlineKind(StrEnum):
    PHOTO = "photo"  # one photo's crop and face template
    MODEL = "model"  # one training's LoRA and checkpoints
    RENDER = "render"  # one render's images
    TRAINED_PHOTOS = "trained_photos"  # every photo stored before a training succeeded
    RESCAN = "rescan"  # an erased subject's prefix and events, checked again for late writes


@dataclass(frozen=True)
class Deadline:
    tenant: str
    subject_id: str
    kind: DeadlineKind
    resource_id: str
    due: datetime
    #: Only object versions written at or before this moment are deleted (TRAINED_PHOTOS).
    cutoff: datetime | None = None
    holder: str = ""
    claimed_until: datetime | None = None

    @property
    def key(self) -> str:
        return deadline_key(self.tenant, self.subject_id, self.kind, self.resource_id)

    def prefixes(self) -> list[str]:
        """Object key prefixes this deadline deletes (every version under each)."""
        base = subject_prefix(self.tenant, self.subject_id)
        match self.kind:
            case DeadlineKind.PHOTO:
                return [f"{base}photos/{self.resource_id}", f"{base}faces/{self.resource_id}"]
            case DeadlineKind.MODEL:
                return [f"{base}models/{self.resource_id}/"]
            case DeadlineKind.RENDER:
                return [f"{base}renders/{self.resource_id}/"]
            case DeadlineKind.TRAINED_PHOTOS:
                return [f"{base}photos/", f"{base}faces/"]
            case DeadlineKind.RESCAN:
                return [base]

    def is_claimed(self, now: datetime) -> bool:
        """Someone (this replica too: a second pass must not run it twice) is carrying it out now."""
        return self.claimed_until is not None and self.claimed_until > now

    def to_json(self) -> bytes:
        data = {
            "tenant": self.tenant,
            "subject_id": self.subject_id,
            "kind": self.kind.value,
            "resource_id": self.resource_id,
            "due": to_rfc3339(self.due),
            "cutoff": to_rfc3339(self.cutoff) if self.cutoff else None,
            "holder": self.holder,
            "claimed_until": to_rfc3339(self.claimed_until) if self.claimed_until else None,
        }
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Deadline:
        data = json.loads(raw)
        return cls(
            tenant=str(data["tenant"]),
            subject_id=str(data["subject_id"]),
            kind=DeadlineKind(data["kind"]),
            resource_id=str(data["resource_id"]),
            due=from_rfc3339(data["due"]),
            cutoff=from_rfc3339(data["cutoff"]) if data.get("cutoff") else None,
            holder=str(data.get("holder") or ""),
            claimed_until=from_rfc3339(data["claimed_until"]) if data.get("claimed_until") else None,
        )


def deadline_key(tenant: str, subject_id: str, kind: DeadlineKind, resource_id: str) -> str:
    return f"{tenant}.{subject_id}.{kind.value}.{resource_id}"


class DeadlineBook:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, key: str) -> tuple[Deadline, int] | None:
        found = await kv_get_bytes(self.kv, key)
        deadline = _trusted(key, found[0]) if found else None
        return (deadline, found[1]) if deadline is not None and found else None

    async def schedule(self, deadline: Deadline) -> Deadline:
        """Creates the deadline, or brings an existing one forward if this one is earlier (never later:
        redelivered events and replicas racing on the same event change nothing)."""
        for _ in range(10):
            try:
                await self.kv.create(deadline.key, deadline.to_json())
                return deadline
            except _CONFLICTS:
                pass
            found = await self.get(deadline.key)
            if found is None:
                continue
            existing, revision = found
            if existing.due <= deadline.due:
                return existing
            earlier = replace(existing, due=deadline.due, cutoff=deadline.cutoff or existing.cutoff)
            try:
                await self.kv.update(deadline.key, earlier.to_json(), last=revision)
                return earlier
            except _CONFLICTS:
                continue
        raise RuntimeError("deadline record kept changing under us")

    async def claim(
        self, key: str, holder: str, now: datetime, lease: timedelta
    ) -> tuple[Deadline, int] | None:
        """Claims a due deadline for `holder`; None if it is not due, gone, or claimed by another."""
        found = await self.get(key)
        if found is None:
            return None
        deadline, revision = found
        if deadline.due > now or deadline.is_claimed(now):
            return None
        claimed = replace(deadline, holder=holder, claimed_until=now + lease)
        try:
            new_revision = await self.kv.update(key, claimed.to_json(), last=revision)
        except _CONFLICTS:
            return None
        return claimed, int(new_revision)

    async def release(self, key: str, revision: int) -> None:
        """Gives a claim back after a failure, so the next pass (of any replica) retries at once."""
        found = await self.get(key)
        if found is None or found[1] != revision:
            return
        with contextlib.suppress(nats.errors.Error, *_CONFLICTS):
            await self.kv.update(
                key, replace(found[0], holder="", claimed_until=None).to_json(), last=revision
            )

    async def complete(self, key: str, revision: int) -> bool:
        """Removes a carried-out deadline, unless someone changed it since our claim."""
        try:
            await self.kv.delete(key, last=revision)
        except (nats.errors.Error, *_CONFLICTS):
            return False
        return True

    async def all(self, prefix: str = "") -> list[tuple[Deadline, int]]:
        trusted = [(_trusted(key, value), rev) for key, value, rev in await kv_entries(self.kv, prefix)]
        return [(deadline, rev) for deadline, rev in trusted if deadline is not None]

    async def of_subject(self, tenant: str, subject_id: str) -> list[tuple[Deadline, int]]:
        return await self.all(f"{tenant}.{subject_id}.")

    async def drop_subject(
        self, tenant: str, subject_id: str, keep: frozenset[DeadlineKind] = frozenset()
    ) -> int:
        dropped = 0
        for deadline, _ in await self.of_subject(tenant, subject_id):
            if deadline.kind not in keep:
                # No purge marker: its key names the subject, whom the erasure calling this removes.
                await kv_forget(self.kv, deadline.key)
                dropped += 1
        return dropped

    async def forget_subject(self, tenant: str, subject_id: str) -> None:
        """Every deadline key of the subject gone, with the markers of the ones carried out before (their
        keys name the subject): the last step of an erasure, once its rescan is done."""
        await kv_forget(self.kv, f"{tenant}.{subject_id}.>")


def _trusted(key: str, raw: bytes) -> Deadline | None:
    """The deadline stored at `key`, if it is the one its key names: what gets deleted is derived from the
    record's tenant, subject and resource, so a record that names another prefix than its own key (written
    by anyone but this service's code) is ignored, never carried out."""
    deadline = Deadline.from_json(raw)
    if (
        deadline.key != key
        or not ids.is_valid_tenant(deadline.tenant)
        or not ids.is_valid_id(deadline.subject_id, "sub")
        or not ids.is_any_id(deadline.resource_id)  # an id (photo, training...), never a path
    ):
        log.warning("a deadline record does not match its key; ignored")
        return None
    return deadline


def due_keys(deadlines: list[tuple[Deadline, int]], now: datetime) -> Iterator[str]:
    for deadline, _ in sorted(deadlines, key=lambda item: item[0].due):
        if deadline.due <= now:
            yield deadline.key
