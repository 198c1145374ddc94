"""Per-tenant token buckets: requests beyond a tenant's rate answer 429 `rate_limited` with `Retry-After`.

In-process, per replica: with N gateway replicas a tenant's ceiling is N times the configured rate (the
chart documents this). Photo uploads draw from a separate, stricter bucket, since each costs far more
(decoding, face detection, a Vault round trip). The tenant comes from the verified token, so an
unauthenticated caller cannot spend a tenant's budget.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import ApiError


@dataclass
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Takes one token; returns 0 when it could, else the seconds until one is there."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Buckets by (tenant, kind); the least recently seen tenants are forgotten beyond `max_tenants`."""

    def __init__(
        self,
        limits: dict[str, tuple[float, int]],
        max_tenants: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.max_tenants = max_tenants
        self.clock = clock
        self._buckets: OrderedDict[tuple[str, str], TokenBucket] = OrderedDict()

    def check(self, tenant: str, kind: str) -> None:
        rate, burst = self.limits[kind]
        now = self.clock()
        key = (tenant, kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(rate=rate, burst=float(burst), tokens=float(burst), updated=now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_tenants * len(self.limits):
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        wait = bucket.take(now)
        if wait > 0:
            raise rate_limited(wait)


def rate_limited(wait_seconds: float) -> ApiError:
    retry_after = max(1, math.ceil(wait_seconds))
    return ApiError(
        429,
        "rate_limited",
        f"Too many requests for this tenant; retry in {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )
