"""One lock per subject, so a subject's photos are checked against each other and stored one at a time.

The duplicate and same-person checks read the subject's accepted photos and then add one: two uploads of
one subject running that section at once could both pass against the same set (two copies of one picture
both accepted, or the photo limit passed). Within a process this lock serialises them; other subjects
are not held up. Replicas do not share it: see the service's notes on running several.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class SubjectLocks:
    def __init__(self) -> None:
        # Per subject: its lock and how many tasks hold or wait for it; dropped at zero, so the map
        # never grows with the number of subjects ever seen.
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, tenant: str, subject_id: str) -> AsyncIterator[None]:
        key = (tenant, subject_id)
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        """Subjects with a holder or a waiter right now."""
        return len(self._locks)
