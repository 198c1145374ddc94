"""One backend read per key at a time: concurrent requests for the same thing share the read in flight.

When a cached entry expires under load, every request in flight for it would otherwise ask the backend at
once (a burst of identical reads each second). Only reads scoped by the caller's tenant are shared, and
each request still runs its own authorization on the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        future = self._calls.get(key)
        if future is None:
            # A task of its own: one waiter that gives up (timeout, client gone) does not cancel the others.
            future = asyncio.ensure_future(read())
            self._calls[key] = future
            future.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(future)

    def _finished(self, key: K, done: asyncio.Future[V]) -> None:
        if self._calls.get(key) is done:
            del self._calls[key]
        if not done.cancelled():
            done.exception()  # retrieved, even when every waiter had gone: no "never retrieved" warning

    def __len__(self) -> int:
        return len(self._calls)
