"""Token buckets per caller under a tenant-wide total: beyond either, 429 `rate_limited` with `Retry-After`.

Every request of a caller (`gateway.caller`: an end user, or one of the tenant's back ends) draws one token
from that caller's bucket *and* one from its tenant's: a caller cannot starve the others of its tenant
beyond its own rate, and a tenant with many callers (many end users) cannot exceed its total. A request
refused by either bucket takes from neither. Photo uploads draw from separate, stricter buckets of both
kinds, since each costs far more (decoding, face detection, a Vault round trip).

The buckets are local to each replica (a request never waits on another process), and they hold across
replicas through `gateway.ratelimit_sync`: every replica reports the tokens it spent per bucket, a few
times a second, and each deducts what the others report from its own buckets (`charge`). Every replica's
bucket then follows the one cluster-wide bucket, behind by what the others spent since their last report:
the cluster admits at most that much more than one replica alone would (a fraction of a burst). A bucket
may go below zero (the others spent what this replica also thought it had), down to minus one burst.

Buckets are named by a keyed digest of (kind, scope, tenant, caller) (`BucketKey`): the same on every
replica that shares the key, meaningless to anyone else, and what the sync puts on the wire. The caller
comes from the verified token, so an unauthenticated request cannot spend anyone's budget.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from gateway.caller import Caller
from gateway.errors import ApiError

DIGEST_BYTES = 16
CALLER, TENANT = "caller", "tenant"


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        # Only ever up to a full burst; a bucket in debt (below zero) climbs back at its rate.
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait(self) -> float:
        """0 when a token is there (after `refill`), else the seconds until one is."""
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def charge(self, spent: float) -> None:
        """Takes what another replica spent (after `refill`), at most down to minus one burst: whatever
        the reports say, a caller waits at most two bursts' worth of its rate."""
        self.tokens = max(-self.burst, self.tokens - spent)


class BucketKey(NamedTuple):
    """A bucket as replicas name it to each other: which limit (`code`, an index into
    `RateLimiter.codes`) and the keyed digest of whose it is."""

    code: int
    digest: bytes


class Spent(NamedTuple):
    key: BucketKey
    tokens: float


class _Buckets:
    """Buckets by key, the least recently used forgotten beyond `capacity` (a forgotten key starts full)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._buckets: OrderedDict[bytes, TokenBucket] = OrderedDict()

    def get(self, key: bytes, rate: Rate, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(rate.per_second, float(rate.burst), float(rate.burst), now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        bucket.refill(now)
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True)
class Limits:
    """The rates of one kind of request (`api`, `upload`): per caller, and the tenant-wide total."""

    caller: Rate
    tenant: Rate


class RateLimiter:
    def __init__(
        self,
        limits: dict[str, Limits],
        max_tenants: int,
        max_callers: int,
        clock: Callable[[], float] = time.monotonic,
        digest_key: bytes | None = None,
    ) -> None:
        self.limits = limits
        self.clock = clock
        # A random key keeps a lone replica's digests as unguessable; replicas that sync share one.
        self._keyed = hashlib.blake2b(
            digest_size=DIGEST_BYTES,
            key=digest_key if digest_key is not None else os.urandom(32),
            person=b"ratelimit",
        )
        #: Wire codes of the limits: the same on replicas configured alike (kinds sorted by name).
        self.codes: tuple[tuple[str, str], ...] = tuple(
            (kind, scope) for kind in sorted(limits) for scope in (CALLER, TENANT)
        )
        self._code_of = {pair: code for code, pair in enumerate(self.codes)}
        self._tenants = _Buckets(max_tenants * len(limits))
        self._callers = _Buckets(max_callers * len(limits))
        #: Tokens spent here and not yet reported, by bucket (only while `sharing`).
        self._spent: dict[BucketKey, float] = {}
        self._max_spent = self._tenants.capacity + self._callers.capacity
        self.sharing = False
        #: Spendings left unreported because too many buckets were waiting to be reported.
        self.unreported = 0

    def check(self, caller: Caller, kind: str) -> None:
        """Takes a token of the caller's and of its tenant's bucket of `kind`, or raises 429."""
        limits = self.limits[kind]
        now = self.clock()
        own_key = self.key(kind, CALLER, caller.tenant, caller.name)
        total_key = self.key(kind, TENANT, caller.tenant)
        own = self._callers.get(own_key.digest, limits.caller, now)
        total = self._tenants.get(total_key.digest, limits.tenant, now)
        wait = max(own.wait(), total.wait())
        if wait > 0:
            raise rate_limited(wait)
        own.tokens -= 1.0
        total.tokens -= 1.0
        if self.sharing:
            self._note(own_key)
            self._note(total_key)

    def key(self, kind: str, scope: str, *names: str) -> BucketKey:
        digest = self._keyed.copy()  # cheaper than keying a new hasher for every request
        for part in (kind, scope, *names):
            encoded = part.encode()
            # Length-prefixed: no two different tuples of names hash the same bytes.
            digest.update(len(encoded).to_bytes(4, "big") + encoded)
        return BucketKey(self._code_of[(kind, scope)], digest.digest())

    def _note(self, key: BucketKey) -> None:
        spent = self._spent.get(key)
        if spent is not None:
            self._spent[key] = spent + 1.0
        elif len(self._spent) < self._max_spent:
            self._spent[key] = 1.0
        else:
            self.unreported += 1

    def take_spent(self, limit: int) -> list[Spent]:
        """Up to `limit` buckets' unreported spending, the longest waiting first; they count as reported."""
        taken: list[Spent] = []
        for key in list(itertools.islice(self._spent, limit)):
            taken.append(Spent(key, self._spent.pop(key)))
        return taken

    def drop_spent(self) -> None:
        """Forgets what is unreported (no one to tell: it would arrive too late to be right)."""
        self._spent.clear()

    def charge(self, spendings: Iterable[Spent]) -> None:
        """Deducts what another replica spent; a bucket this replica does not hold starts full, less it."""
        now = self.clock()
        for key, tokens in spendings:
            if not 0 <= key.code < len(self.codes):
                continue  # a limit this replica does not have (another version): nothing to deduct from
            kind, scope = self.codes[key.code]
            limits = self.limits[kind]
            if scope == CALLER:
                bucket = self._callers.get(key.digest, limits.caller, now)
            else:
                bucket = self._tenants.get(key.digest, limits.tenant, now)
            bucket.charge(tokens)


def rate_limited(wait_seconds: float) -> ApiError:
    retry_after = max(1, math.ceil(wait_seconds))
    return ApiError(
        429,
        "rate_limited",
        f"Too many requests; retry in {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )
