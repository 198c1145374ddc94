"""Leases in the `leases` KV bucket: which replica works on an erasure (or runs the orphan sweep) right now.

Taken with compare-and-set (create, or update at the revision read when the holder's time is up), renewed
by the holder while it works, released when done. A replica that dies stops renewing, and another takes
over once the lease has expired. Time comes from the injected clock, so tests can expire leases.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from likeness.timeutil import Clock, from_rfc3339, to_rfc3339

_CONFLICTS = (nats.js.errors.KeyWrongLastSequenceError,)


class Leases:
    def __init__(self, kv: KeyValue, holder: str, clock: Clock, seconds: float) -> None:
        self.kv = kv
        self.holder = holder
        self.clock = clock
        self.duration = timedelta(seconds=seconds)

    def _value(self) -> bytes:
        until = self.clock.now() + self.duration
        return json.dumps({"holder": self.holder, "until": to_rfc3339(until)}).encode()

    async def _current(self, name: str) -> tuple[str, datetime, int] | None:
        try:
            entry = await self.kv.get(name)
        except nats.js.errors.KeyNotFoundError:
            return None
        if not entry.value:
            return None
        data = json.loads(entry.value)
        return str(data["holder"]), from_rfc3339(str(data["until"])), int(entry.revision or 0)

    async def acquire(self, name: str) -> int | None:
        """The lease's revision if this replica holds it now; None if another replica does."""
        try:
            return int(await self.kv.create(name, self._value()))
        except _CONFLICTS:
            pass
        current = await self._current(name)
        if current is None:
            return None  # released between our two calls: the next attempt takes it
        holder, until, revision = current
        if holder != self.holder and until > self.clock.now():
            return None
        try:
            return int(await self.kv.update(name, self._value(), last=revision))
        except _CONFLICTS:
            return None

    async def renew(self, name: str, revision: int) -> int | None:
        """The new revision, or None if the lease was lost (someone took it over)."""
        try:
            return int(await self.kv.update(name, self._value(), last=revision))
        except _CONFLICTS:
            return None

    async def release(self, name: str, revision: int) -> None:
        with contextlib.suppress(nats.errors.Error, *_CONFLICTS):
            await self.kv.delete(name, last=revision)
