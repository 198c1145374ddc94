"""Rate buckets that hold across replicas, as arithmetic: replicas that charge each other what they spent
admit about what one replica alone would, where unsynced ones admit their sum; the reports' wire format
and what a replica makes of a report (its own, a stale one, a malformed one).

The replicas here are `RateLimiter`s on one simulated clock, synced by hand every `SYNC` seconds (what
`RateLimitSync` does over NATS, which `tests/test_gateway_replicas_e2e.py` runs for real).
"""

from __future__ import annotations

import math
import struct
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.caller import Caller
from gateway.errors import ApiError
from gateway.metrics import Metrics
from gateway.ratelimit import BucketKey, Limits, Rate, RateLimiter, Spent
from gateway.ratelimit_sync import (
    ENTRY,
    HEADER,
    MAX_KEYS,
    MAX_MESSAGES,
    STALE_SECONDS,
    RateLimitSync,
    decode,
    encode,
)

KEY = b"k" * 32
ANNA = Caller("acme", "sub:anna")
SYNC = 0.1
#: Requests every 2 ms, far beyond the rate: the limit, not the client, decides what is admitted.
STEP = 0.002


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


ANNA_RATE = Rate(20.0, 20)


def replica(clock: Clock, key: bytes = KEY, caller: Rate = ANNA_RATE) -> RateLimiter:
    limiter = RateLimiter(
        {"api": Limits(caller=caller, tenant=Rate(1000.0, 2000))}, 10, 100, clock=clock, digest_key=key
    )
    limiter.sharing = True
    return limiter


def admitted(limiter: RateLimiter, caller: Caller = ANNA) -> bool:
    try:
        limiter.check(caller, "api")
    except ApiError:
        return False
    return True


def sync(replicas: list[RateLimiter]) -> None:
    for sender in replicas:
        spent = sender.take_spent(MAX_KEYS)
        for receiver in replicas:
            if receiver is not sender:
                receiver.charge(spent)


def run(replicas: list[RateLimiter], clock: Clock, seconds: float, synced: bool) -> int:
    """Requests alternating between the replicas for `seconds`; how many were admitted in all."""
    count, steps, next_sync = 0, round(seconds / STEP), clock.now + SYNC
    for step in range(steps):
        count += admitted(replicas[step % len(replicas)])
        clock.now += STEP
        if clock.now >= next_sync:
            if synced:
                sync(replicas)
            next_sync += SYNC
    return count


def test_one_replica_admits_its_burst_then_its_rate() -> None:
    clock = Clock()
    alone = run([replica(clock)], clock, 10.0, synced=False)
    assert alone == pytest.approx(20 + 20 * 10.0, abs=2)


@pytest.mark.parametrize("replicas", [2, 3, 5])
def test_synced_replicas_admit_what_one_would_within_ten_percent(replicas: int) -> None:
    clock = Clock()
    alone = run([replica(clock)], clock, 10.0, synced=False)
    clock = Clock()
    together = run([replica(clock) for _ in range(replicas)], clock, 10.0, synced=True)
    assert abs(together - alone) <= 0.1 * alone, (together, alone)


def test_unsynced_replicas_each_admit_the_limit() -> None:
    clock = Clock()
    alone = run([replica(clock)], clock, 10.0, synced=False)
    clock = Clock()
    apart = run([replica(clock), replica(clock)], clock, 10.0, synced=False)
    assert apart == pytest.approx(2 * alone, rel=0.05)


def test_replicas_with_different_keys_do_not_charge_each_other() -> None:
    clock = Clock()
    ours, theirs = replica(clock), replica(clock, key=b"x" * 32)
    for _ in range(20):
        assert admitted(theirs)
    ours.charge(theirs.take_spent(MAX_KEYS))
    assert admitted(ours), "their digests name no bucket of ours that Anna uses"


def test_a_report_charges_a_bucket_this_replica_never_saw_and_debt_is_floored_at_one_burst() -> None:
    clock = Clock()
    here, there = replica(clock), replica(clock)
    for _ in range(15):
        assert admitted(there)
    here.charge(there.take_spent(MAX_KEYS))
    assert [admitted(here) for _ in range(6)] == [True] * 5 + [False], "20 - 15 tokens left"
    here.charge([Spent(here.key("api", "caller", "acme", "sub:anna"), 1000.0)])
    clock.now += 1.0  # 20 tokens back, from minus one burst (20), not from -1000
    assert not admitted(here)
    clock.now += 1.05
    assert admitted(here)


def test_a_refusal_reports_nothing_and_a_report_counts_once() -> None:
    clock = Clock()
    limiter = replica(clock, caller=Rate(1.0, 2))
    assert [admitted(limiter) for _ in range(3)] == [True, True, False]
    spent = {key: tokens for key, tokens in limiter.take_spent(MAX_KEYS)}
    assert sorted(spent.values()) == [2.0, 2.0], "the caller's and the tenant's bucket, two tokens each"
    assert limiter.take_spent(MAX_KEYS) == []


def test_spending_is_reported_oldest_first_in_bounded_batches_and_bounded_in_all() -> None:
    clock = Clock()
    limiter = RateLimiter(
        {"api": Limits(caller=Rate(10.0, 10), tenant=Rate(1e6, 10**6))}, 1, 3, clock=clock, digest_key=KEY
    )
    limiter.sharing = True
    for n in range(3):  # three callers and the tenant: the bound (3 + 1 buckets)
        assert admitted(limiter, Caller("acme", f"sub:{n}"))
    assert admitted(limiter, Caller("acme", "sub:late")), "over the bound, still limited, just unreported"
    assert limiter.unreported == 1
    first = limiter.take_spent(2)
    assert [key for key, _ in first] == [
        limiter.key("api", "caller", "acme", "sub:0"),
        limiter.key("api", "tenant", "acme"),
    ]
    assert len(limiter.take_spent(10)) == 2
    admitted(limiter, Caller("acme", "sub:0"))
    limiter.drop_spent()
    assert limiter.take_spent(10) == []


def test_digests_name_no_one_and_differ_by_kind_and_scope() -> None:
    limiter = replica(Clock())
    caller = limiter.key("api", "caller", "acme", "sub:anna")
    assert len(caller.digest) == 16
    assert b"acme" not in caller.digest
    assert b"anna" not in caller.digest
    assert caller != limiter.key("api", "tenant", "acme")
    # Length-prefixed parts: moving a separator between tenant and caller is another bucket.
    assert limiter.key("api", "caller", "ac", "mesub:anna") != limiter.key(
        "api", "caller", "acme", "sub:anna"
    )
    assert replica(Clock()).key("api", "caller", "acme", "sub:anna") == caller, "same key, same digest"


# ------------------------------------------------------------------------------------------ the wire


def spendings(count: int) -> list[Spent]:
    return [Spent(BucketKey(n % 2, n.to_bytes(16, "big")), float(n + 1)) for n in range(count)]


def test_a_report_reads_back_as_written_and_is_bounded() -> None:
    data = encode(b"r" * 16, 1234.5, spendings(MAX_KEYS))
    assert len(data) == HEADER.size + MAX_KEYS * ENTRY.size <= 22 * 1024
    report = decode(data)
    assert (report.replica, report.sent_at, report.spent) == (b"r" * 16, 1234.5, spendings(MAX_KEYS))
    with pytest.raises(ValueError, match="at most"):
        encode(b"r" * 16, 0.0, spendings(MAX_KEYS + 1))


def _header(version: int = 1, sent_at: float = 1.0, count: int = 1) -> bytes:
    return HEADER.pack(version, b"r" * 16, sent_at, count)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(_header()[:-1], id="short-header"),
        pytest.param(_header(version=2) + ENTRY.pack(0, b"d" * 16, 1.0), id="other-version"),
        pytest.param(_header(count=2) + ENTRY.pack(0, b"d" * 16, 1.0), id="count-beyond-data"),
        pytest.param(_header() + ENTRY.pack(0, b"d" * 16, 1.0) + b"x", id="trailing-bytes"),
        pytest.param(
            _header(count=MAX_KEYS + 1) + ENTRY.pack(0, b"d" * 16, 1.0) * (MAX_KEYS + 1), id="too-many"
        ),
        pytest.param(_header(sent_at=math.nan) + ENTRY.pack(0, b"d" * 16, 1.0), id="no-time"),
        pytest.param(_header() + ENTRY.pack(0, b"d" * 16, math.inf), id="infinite-tokens"),
        pytest.param(_header() + ENTRY.pack(0, b"d" * 16, -5.0), id="negative-tokens"),
        pytest.param(_header() + ENTRY.pack(0, b"d" * 16, 0.0), id="zero-tokens"),
    ],
)
def test_anything_but_a_report_is_refused(data: bytes) -> None:
    with pytest.raises((ValueError, struct.error)):
        decode(data)


# ------------------------------------------------------------------------------------------ a replica


class FakeNats:
    def __init__(self) -> None:
        self.is_connected = True
        self.published: list[bytes] = []

    async def publish(self, subject: str, data: bytes) -> None:
        self.published.append(data)


def _count(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "likeness_gateway_ratelimit_sync_messages_total", {"outcome": outcome}
    )
    assert value is not None
    return value


def _message(data: bytes) -> Any:
    return SimpleNamespace(data=data)


async def test_a_replica_charges_others_reports_not_its_own_nor_stale_or_malformed_ones() -> None:
    clock, wall = Clock(), Clock()
    limiter, metrics = replica(clock, caller=Rate(1.0, 5)), Metrics()
    syncer = RateLimitSync(limiter, SYNC, metrics, wall_clock=wall)
    anna = limiter.key("api", "caller", "acme", "sub:anna")
    await syncer._on_report(_message(encode(syncer.replica, wall.now, [Spent(anna, 5.0)])))
    await syncer._on_report(_message(encode(b"o" * 16, wall.now - STALE_SECONDS - 1, [Spent(anna, 5.0)])))
    await syncer._on_report(_message(b"\x01garbage"))
    assert admitted(limiter), "nothing charged yet"
    await syncer._on_report(_message(encode(b"o" * 16, wall.now - 0.01, [Spent(anna, 4.0)])))
    assert not admitted(limiter), "5 - 1 - 4 tokens"
    assert [_count(metrics, outcome) for outcome in ("received", "stale", "malformed")] == [1, 1, 1]
    assert metrics.registry.get_sample_value("likeness_gateway_ratelimit_sync_peers") == 1


async def test_a_replica_reports_in_bounded_messages_and_forgets_spending_while_disconnected() -> None:
    clock = Clock()
    limiter = RateLimiter(
        {"api": Limits(caller=Rate(10.0, 10), tenant=Rate(1e6, 10**6))},
        1,
        MAX_KEYS * (MAX_MESSAGES + 1),
        clock=clock,
        digest_key=KEY,
    )
    metrics = Metrics()
    syncer, nc = RateLimitSync(limiter, SYNC, metrics), FakeNats()
    await syncer.report()  # not attached: nothing sent, the spending forgotten
    for n in range(MAX_KEYS * MAX_MESSAGES + 10):
        assert admitted(limiter, Caller("acme", f"sub:{n}"))
    syncer._nc = nc  # type: ignore[assignment]
    await syncer.report()
    assert len(nc.published) == MAX_MESSAGES, "at most MAX_MESSAGES per interval"
    assert all(len(decode(data).spent) == MAX_KEYS for data in nc.published)
    await syncer.report()
    assert len(decode(nc.published[-1]).spent) == 11, "the rest at the next interval (10 callers + tenant)"
    await syncer.report()
    assert len(nc.published) == MAX_MESSAGES + 1, "nothing spent, nothing sent"
    admitted(limiter, Caller("acme", "sub:0"))
    nc.is_connected = False
    await syncer.report()
    nc.is_connected = True
    await syncer.report()
    assert len(nc.published) == MAX_MESSAGES + 1, "what was spent while disconnected is not sent late"
