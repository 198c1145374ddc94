"""A per-scope index of ids in the order they were made, paged newest first by the server: what makes one
page of a listing cost the same at 100 items as at 100,000.

The index is a KV bucket whose keys are `<scope>.<id>` (a tenant and a subject id), each written once,
when the item is made, and never rewritten: the bucket's stream then holds a scope's ids in creation
order, and a page is read backwards from a stream sequence with JetStream's batched direct get
(`{"seq", "next_by_subj", "batch"}`, one request per window of the stream, windows growing while they
come up sparse). Nothing is sorted, and nothing but the page is read: a listing that read every record of
the scope and sorted them cost in proportion to the whole tenant.

Which filter a window is read with matters as much. Filtered by the scope (`<scope>.*`), nats-server
matches the filter against every key of the scope for each message it returns (measured on 2.15: 64
entries in 10 ms at 1k keys, 68 ms at 100k), and so it does for `$KV.<bucket>.>`: the cost of a page
would follow the tenant again. Read with the bare `>` (no matching at all) and filtered here, a window
costs what it holds (64 entries in 3 to 4 ms at 1k as at 100k). So windows are read whole while the
scope fills a fair part of them (one tenant, or a few large ones), and filtered by the server only once a
window comes up nearly empty: the scope is then small next to the others, and so is the matching.

A page token is the id the previous page ended with; its sequence is looked up by key (one get). When
that id has since been forgotten (its item erased between two pages), the position is found by binary
search over the stream (ids sort by creation time, as the stream does), in log2(stream) gets.

The bucket's stream must allow direct gets (`BucketSpec.allow_direct`), and its reader needs
`$JS.API.DIRECT.GET.<stream>` (`likeness.access_policies`). Keys name the item: forget them with the item
(`forget`, a stream purge that leaves no marker, as `likeness.bus.kv_forget`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from likeness.bus import KV_LIST_TIMEOUT_SECONDS, kv_forget

#: Stream sequences read by the first window of a page; a sparse window (other scopes' ids, forgotten
#: ones) makes the next one larger, up to `MAX_WINDOW`.
FIRST_WINDOW = 64
MAX_WINDOW = 4096
#: A window in which the scope has fewer entries than this share is sparse: the next ones are filtered by
#: the server (the scope is small next to the rest of the stream), and larger.
SPARSE_SHARE = 1 / 8
MAX_FILTERED_WINDOW = 1 << 20
#: Messages asked for in one batched direct get (a window is read in as many as it needs).
BATCH = 512


@dataclass(frozen=True)
class _Bounds:
    first: int
    last: int


class CreationOrder:
    """The ids of each scope in the order they were added (see the module)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._js = kv._js
        self._stream = kv._stream
        self._pre = kv._pre

    async def add(self, scope: str, item_id: str) -> None:
        """Appends the id (once: an id already there keeps its place)."""
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):
            await self.kv.create(_key(scope, item_id), b"")

    async def forget(self, scope: str, item_id: str) -> None:
        """Removes the id and every trace of its key (no marker naming it is left)."""
        await kv_forget(self.kv, _key(scope, item_id))

    async def is_empty(self) -> bool:
        return (await self._bounds()) is None

    async def newest_first(self, scope: str, before: str = "") -> AsyncIterator[list[str]]:
        """The scope's ids, newest first, in batches (one per window read), starting after `before` (the
        id the previous page ended with; "" for the newest)."""
        bounds = await self._bounds()
        if bounds is None:
            return
        end = bounds.last + 1  # exclusive
        if before:
            end = await self._sequence_of(scope, before, bounds)
        window, filtered = FIRST_WINDOW, False
        while end > bounds.first:
            start = max(bounds.first, end - window)
            found = await self._read(scope, start, end, filtered)
            if found:
                yield [item_id for _, item_id in reversed(found)]
            if len(found) < (end - start) * SPARSE_SHARE:
                filtered, window = True, min(window * 16, MAX_FILTERED_WINDOW)
            else:
                grow = 4 if len(found) < (end - start) // 2 else 1
                filtered, window = False, min(window * grow, MAX_WINDOW)
            end = start

    # ------------------------------------------------------------------------------------------ reads

    async def _bounds(self) -> _Bounds | None:
        state = (await self._js.stream_info(self._stream)).state
        if not state.messages:
            return None
        return _Bounds(int(state.first_seq), int(state.last_seq))

    async def _read(self, scope: str, start: int, end: int, filtered: bool) -> list[tuple[int, str]]:
        """(sequence, id) of the scope's entries with start <= sequence < end, oldest first, read from every
        message of the window or, `filtered`, from the scope's only, `BATCH` at a time."""
        found: list[tuple[int, str]] = []
        while start < end:
            batch, after = await self._batch(scope, start, end, filtered)
            found += batch
            if after is None:
                return found
            start = after
        return found

    async def _batch(
        self, scope: str, start: int, end: int, filtered: bool
    ) -> tuple[list[tuple[int, str]], int | None]:
        """One batched direct get from `start`: the scope's entries before `end`, and where to go on from
        (None: nothing more before `end`)."""
        nc = self._js._nc
        inbox = nc.new_inbox()
        subscription = await nc.subscribe(inbox)
        wanted = self._filter(scope)
        size = min(BATCH, end - start)
        request = {
            "seq": start,
            # ">" itself, not `$KV.<bucket>.>`: only the bare wildcard spares the server any matching.
            "next_by_subj": wanted if filtered else ">",
            "batch": size,
        }
        scope_prefix = wanted[:-1]
        found: list[tuple[int, str]] = []
        received, last = 0, start
        try:
            await nc.publish(
                f"{self._js._prefix}.DIRECT.GET.{self._stream}", json.dumps(request).encode(), reply=inbox
            )
            while True:
                msg = await subscription.next_msg(timeout=KV_LIST_TIMEOUT_SECONDS)
                headers = msg.headers or {}
                if "Status" in headers:  # 204: end of the batch; 404: nothing from `start` on
                    if headers["Status"] not in ("204", "404"):
                        raise nats.js.errors.APIError(description=f"direct get: {headers['Status']}")
                    # A full batch may have more after it; a short one was all there is.
                    return found, (last + 1 if received == size and last + 1 < end else None)
                sequence = int(headers["Nats-Sequence"])
                received, last = received + 1, sequence
                if sequence >= end:
                    # Past the window (a filtered read): the rest of the batch goes with the subscription.
                    return found, None
                nats_subject = headers["Nats-Subject"]
                # Another scope's entry, or a delete or purge marker (it names no live id), is skipped.
                if nats_subject.startswith(scope_prefix) and "KV-Operation" not in headers:
                    found.append((sequence, nats_subject[len(scope_prefix) :]))
        finally:
            await subscription.unsubscribe()

    async def _sequence_of(self, scope: str, item_id: str, bounds: _Bounds) -> int:
        """The sequence of the id's entry; for an id no longer there, the first sequence whose entry was
        made after it (binary search: entries are in creation order, as ids are)."""
        try:
            found = await self._js.get_msg(self._stream, subject=f"{self._pre}{_key(scope, item_id)}")
            return int(found.seq or 0)
        except nats.js.errors.NotFoundError:
            pass
        low, high = bounds.first, bounds.last + 1
        while low < high:
            middle = (low + high) // 2
            entry = await self._first_from(scope, middle)
            if entry is None or entry[1] >= item_id:
                high = middle
            else:
                low = entry[0] + 1
        return low

    async def _first_from(self, scope: str, sequence: int) -> tuple[int, str] | None:
        """The scope's first entry at or after `sequence`."""
        try:
            found = await self._js.get_msg(self._stream, seq=sequence, subject=self._filter(scope), next=True)
        except nats.js.errors.NotFoundError:
            return None
        return int(found.seq or 0), str(found.subject).rsplit(".", 1)[1]

    def _filter(self, scope: str) -> str:
        return f"{self._pre}{scope}.*"


def _key(scope: str, item_id: str) -> str:
    return f"{scope}.{item_id}"
