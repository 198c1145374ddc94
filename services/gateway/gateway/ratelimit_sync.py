"""Gateway replicas telling each other what their rate buckets spent, so the limits hold cluster-wide.

Every `interval` each replica publishes, on the core NATS subject `RATE_LIMIT_SYNC` (no stream: a
report is worth something for a fraction of a second), the tokens it spent per bucket since its last
report; each replica deducts what the others report from its own buckets (`RateLimiter.charge`). No
request waits on NATS: without it each replica limits alone (the ceilings are then the replica count times
the rates) and what it spent meanwhile is forgotten, not reported late.

A report names buckets by their keyed digest only (`gateway.ratelimit.BucketKey`; the key is derived from
the gateway's idempotency secret, which its replicas share): no tenant, caller or person is on the wire.
Only the gateway's NATS identity may publish or subscribe to the subject (`likeness.provisioning`).

The wire format is fixed-size and bounded (`HEADER`, then `count` times `ENTRY`, at most `MAX_KEYS` entries,
about 21 KiB); a replica sends at most `MAX_MESSAGES` of them per interval, the rest at the next.
A report older than `STALE_SECONDS` is dropped (the buckets it would charge have refilled since); a
replica not heard for `PEER_SILENCE_SECONDS` is forgotten (the peers gauge).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from gateway.metrics import Metrics
from gateway.ratelimit import DIGEST_BYTES, BucketKey, RateLimiter, Spent
from likeness.jobs import stop_task
from likeness.provisioning import RATE_LIMIT_SYNC

log = logging.getLogger(__name__)

VERSION = 1
REPLICA_ID_BYTES = 16
#: version, replica id, sent at (Unix seconds), entry count.
HEADER = struct.Struct(f"!B{REPLICA_ID_BYTES}sdH")
#: limit code, bucket digest, tokens spent.
ENTRY = struct.Struct(f"!B{DIGEST_BYTES}sf")
MAX_KEYS = 1024
MAX_MESSAGES = 16
#: A report's tokens are at most this (a replica spends one per request; more is not a real report).
MAX_TOKENS = 1e6
STALE_SECONDS = 5.0
PEER_SILENCE_SECONDS = 10.0
MAX_PEERS = 1024


@dataclass(frozen=True)
class Report:
    replica: bytes
    sent_at: float
    spent: list[Spent]


def encode(replica: bytes, sent_at: float, spent: list[Spent]) -> bytes:
    if len(spent) > MAX_KEYS:
        raise ValueError(f"a report holds at most {MAX_KEYS} buckets")
    parts = [HEADER.pack(VERSION, replica, sent_at, len(spent))]
    parts += [ENTRY.pack(key.code, key.digest, tokens) for key, tokens in spent]
    return b"".join(parts)


def decode(data: bytes) -> Report:
    """The report in `data`, or ValueError for anything not exactly a report of this version."""
    if len(data) < HEADER.size:
        raise ValueError("shorter than a header")
    version, replica, sent_at, count = HEADER.unpack_from(data)
    if version != VERSION:
        raise ValueError(f"version {version}")
    if count > MAX_KEYS or len(data) != HEADER.size + count * ENTRY.size:
        raise ValueError("length does not match the count")
    if not math.isfinite(sent_at):
        raise ValueError("no send time")
    spent = []
    for code, digest, tokens in ENTRY.iter_unpack(memoryview(data)[HEADER.size :]):
        if not (math.isfinite(tokens) and 0 < tokens <= MAX_TOKENS):
            raise ValueError("tokens out of range")
        spent.append(Spent(BucketKey(code, digest), tokens))
    return Report(replica, sent_at, spent)


class RateLimitSync:
    """Reports this replica's spending every `interval` and charges the others' (attach to a connection
    with `attach`, run with `start`)."""

    def __init__(
        self,
        limiter: RateLimiter,
        interval: float,
        metrics: Metrics,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.limiter = limiter
        self.interval = interval
        self.metrics = metrics
        self.wall_clock = wall_clock
        self.replica = os.urandom(REPLICA_ID_BYTES)
        #: Other replicas by id: when last heard (monotonic).
        self.peers: dict[bytes, float] = {}
        self._nc: NATS | None = None
        self._task: asyncio.Task[None] | None = None
        limiter.sharing = True
        metrics.ratelimit_sync_peers.set_function(self._live_peers)
        metrics.ratelimit_sync_unreported.set_function(lambda: limiter.unreported)

    async def attach(self, nc: NATS) -> None:
        """Listens on `nc` (nats-py restores the subscription after a reconnect) and reports through it."""
        await nc.subscribe(RATE_LIMIT_SYNC, cb=self._on_report)
        self._nc = nc

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.report()
            except (nats.errors.Error, OSError):
                self.metrics.ratelimit_sync_messages.labels(outcome="unsent").inc()

    async def report(self) -> None:
        """Publishes what was spent since the last report (nothing when nothing was)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            self.limiter.drop_spent()
            return
        for _ in range(MAX_MESSAGES):
            spent = self.limiter.take_spent(MAX_KEYS)
            if not spent:
                return
            await nc.publish(RATE_LIMIT_SYNC, encode(self.replica, self.wall_clock(), spent))
            self.metrics.ratelimit_sync_messages.labels(outcome="sent").inc()

    async def _on_report(self, msg: Msg) -> None:
        if msg.data[1 : 1 + REPLICA_ID_BYTES] == self.replica:
            return  # our own, echoed back by the server
        try:
            report = decode(msg.data)
        except (ValueError, struct.error):
            self.metrics.ratelimit_sync_messages.labels(outcome="malformed").inc()
            return
        lag = self.wall_clock() - report.sent_at
        if lag > STALE_SECONDS:
            self.metrics.ratelimit_sync_messages.labels(outcome="stale").inc()
            return
        self.metrics.ratelimit_sync_lag.observe(max(0.0, lag))
        self.metrics.ratelimit_sync_messages.labels(outcome="received").inc()
        self._heard(report.replica)
        self.limiter.charge(report.spent)

    def _heard(self, replica: bytes) -> None:
        now = time.monotonic()
        if replica in self.peers or len(self.peers) < MAX_PEERS:
            self.peers[replica] = now
        if len(self.peers) >= MAX_PEERS:
            self._forget_silent(now)

    def _forget_silent(self, now: float) -> None:
        for replica, heard in list(self.peers.items()):
            if now - heard > PEER_SILENCE_SECONDS:
                del self.peers[replica]

    def _live_peers(self) -> int:
        self._forget_silent(time.monotonic())
        return len(self.peers)

    async def close(self) -> None:
        if self._task is not None:
            await stop_task(self._task, timeout=3.0)
        with contextlib.suppress(nats.errors.Error, OSError):
            await self.report()  # the last spending, for the replicas that stay
