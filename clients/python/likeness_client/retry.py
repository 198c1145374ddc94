"""When to try a request again, and how long to wait first.

Only what is safe and likely to succeed later is retried: 429 (rate limited) and 503 (a backend is
down), and failures to reach the gateway at all. Every POST carries an `Idempotency-Key` that stays the
same across the retries of one call, so a retried POST never creates a second subject, training or
render. Waits grow exponentially with full jitter (so many clients do not retry in lockstep) and are
never shorter than the `Retry-After` the gateway asked for.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

DEFAULT_RETRY_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    #: Tries in all, the first included (1: never retry).
    max_attempts: int = 4
    #: The first backoff's upper bound, doubled on every try.
    base_delay: float = 0.5
    #: No backoff is longer than this.
    max_delay: float = 30.0
    #: A `Retry-After` longer than this is not waited out: the error is raised (with `retry_after` set).
    max_retry_after: float = 120.0
    retry_statuses: frozenset[int] = DEFAULT_RETRY_STATUSES
    #: Returns a float in [0, 1); replaceable for deterministic tests.
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays cannot be negative")

    def backoff(self, attempt: int) -> float:
        """The wait after failed try number `attempt` (1-based): full jitter over the capped exponential."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return self.random() * ceiling

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """How long to wait before the next try, or None when there is none to make."""
        if attempt >= self.max_attempts:
            return None
        wait = self.backoff(attempt)
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            wait = max(wait, retry_after)
        return wait

    def retries_status(self, status: int) -> bool:
        return status in self.retry_statuses


#: Failures to get an answer at all. With the idempotency key, a POST whose answer was lost is safe to send
#: again: the gateway replays the first answer.
RETRYABLE_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.TransportError,)

NO_RETRY = RetryPolicy(max_attempts=1)
