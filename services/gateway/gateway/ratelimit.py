"""Token buckets per caller under a tenant-wide total: beyond either, 429 `rate_limited` with `Retry-After`.

Every request of a caller (`gateway.caller`: an end user, or one of the tenant's back ends) draws one token
from that caller's bucket *and* one from its tenant's: a caller cannot starve the others of its tenant
beyond its own rate, and a tenant with many callers (many end users) cannot exceed its total. A request
refused by either bucket takes from neither. Photo uploads draw from separate, stricter buckets of both
kinds, since each costs far more (decoding, face detection, a Vault round trip).

In-process, per replica: with N gateway replicas the ceilings are N times the configured rates (the chart
documents this; issue "Many tenants, one fleet" makes them cluster-wide). The caller comes from the
verified token, so an unauthenticated request cannot spend anyone's budget.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from gateway.caller import Caller
from gateway.errors import ApiError


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
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait(self) -> float:
        """0 when a token is there (after `refill`), else the seconds until one is."""
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


class _Buckets:
    """Buckets by key, the least recently used forgotten beyond `capacity` (a forgotten key starts full)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def get(self, key: Hashable, rate: Rate, now: float) -> TokenBucket:
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
    ) -> None:
        self.limits = limits
        self.clock = clock
        self._tenants = _Buckets(max_tenants * len(limits))
        self._callers = _Buckets(max_callers * len(limits))

    def check(self, caller: Caller, kind: str) -> None:
        """Takes a token of the caller's and of its tenant's bucket of `kind`, or raises 429."""
        limits = self.limits[kind]
        now = self.clock()
        own = self._callers.get((caller, kind), limits.caller, now)
        total = self._tenants.get((caller.tenant, kind), limits.tenant, now)
        wait = max(own.wait(), total.wait())
        if wait > 0:
            raise rate_limited(wait)
        own.tokens -= 1.0
        total.tokens -= 1.0


def rate_limited(wait_seconds: float) -> ApiError:
    retry_after = max(1, math.ceil(wait_seconds))
    return ApiError(
        429,
        "rate_limited",
        f"Too many requests; retry in {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )
