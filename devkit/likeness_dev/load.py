"""Many people through the whole journey at once, spread over one or more gateway replicas.

The fault suite's load tests (`tests/chaos/test_chaos_load.py` on the default stack, and the two-replica,
clustered stack) share it: journey n goes through gateway `n % len(urls)`, each in a thread of its own, and
the first journey error is raised. The figures are for reporting, never for asserting.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from likeness_dev.journey import GatewayClient, JourneyResult, run_journey

JOURNEY_TIMEOUT_SECONDS = 900.0


@dataclass(frozen=True)
class LoadOutcome:
    """Every journey's result and duration (in journey order), and the wall time of them all."""

    results: list[JourneyResult]
    seconds: list[float]
    wall: float

    def figures(self, training_steps: int, images_per_journey: int) -> dict[str, float | int]:
        journeys = len(self.results)
        return {
            "journeys": journeys,
            "wall_s": round(self.wall, 1),
            "journeys_per_min": round(journeys / self.wall * 60, 2),
            "journey_p50_s": round(statistics.median(self.seconds), 1),
            "journey_p95_s": round(_percentile(self.seconds, 0.95), 1),
            "training_steps": training_steps,
            "images_per_journey": images_per_journey,
        }


def run_load(
    gateway_urls: Sequence[str],
    token: str,
    photos: Sequence[tuple[str, bytes]],
    *,
    people: int,
    training_steps: int,
    images_per_style: int,
    styles: tuple[str, ...] = ("linkedin",),
) -> LoadOutcome:
    """`people` journeys at once, journey n through `gateway_urls[n % len(gateway_urls)]`."""

    def journey(number: int) -> tuple[float, JourneyResult]:
        client = GatewayClient(gateway_urls[number % len(gateway_urls)], token, timeout=120.0)
        started = time.monotonic()
        try:
            result = run_journey(
                client,
                list(photos),
                styles=styles,
                images_per_style=images_per_style,
                training_steps=training_steps,
                seed=number,
                say=lambda line: None,
                timeout=JOURNEY_TIMEOUT_SECONDS,
            )
        finally:
            client.close()
        return time.monotonic() - started, result

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=people) as pool:
        outcomes = list(pool.map(journey, range(people)))  # the first journey error is raised here
    return LoadOutcome(
        results=[result for _, result in outcomes],
        seconds=[seconds for seconds, _ in outcomes],
        wall=time.monotonic() - started,
    )


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
