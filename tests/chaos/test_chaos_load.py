"""Twenty people through the whole journey at once on the tiny model, with no error.

Each journey (create, upload, train, render, download, erase, then every read answers 404/410) runs in
its own thread against the one stack. The throughput and journey times are printed (`-s` shows them)
and written to `$LIKENESS_CHAOS_REPORT` when set; they are reported, not asserted.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from likeness_dev.journey import GatewayClient, JourneyResult, run_journey
from likeness_dev.samples import sample_photos

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

SUBJECTS = 20
TRAINING_STEPS = 4
IMAGES_PER_STYLE = 2


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def test_twenty_journeys_at_once_complete_without_error(kit: Any) -> None:
    photos = sample_photos(2)
    kit.ledger.add_photos(photos)
    token = kit.stack.mint_token()
    kit.ledger.add_token(token)
    kit.ledger.add_external_ref("demo-person-1")  # what run_journey sends

    def journey(number: int) -> tuple[float, JourneyResult]:
        client = GatewayClient(kit.stack.gateway_url, token, timeout=120.0)
        started = time.monotonic()
        try:
            result = run_journey(
                client,
                photos,
                styles=("linkedin",),
                images_per_style=IMAGES_PER_STYLE,
                training_steps=TRAINING_STEPS,
                seed=number,
                say=lambda line: None,
                timeout=900.0,
            )
        finally:
            client.close()
        return time.monotonic() - started, result

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=SUBJECTS) as pool:
        outcomes = list(pool.map(journey, range(SUBJECTS)))  # the first journey error fails the test
    wall = time.monotonic() - started

    for _, result in outcomes:
        kit.ledger.add_subject(result.subject_id)
        for image in result.images:
            kit.ledger.images[image.image_id] = image.data
        assert all(photo["status"] == "accepted" for photo in result.photos), result.photos
        assert len(result.images) == IMAGES_PER_STYLE
        assert result.erasure["status"] == "completed"
        assert all(status in (404, 410) for status in result.after_erasure.values()), result.after_erasure
        assert kit.versions(result.subject_id) == [], "nothing of the person is left"
    assert len({result.subject_id for _, result in outcomes}) == SUBJECTS

    times = [seconds for seconds, _ in outcomes]
    figures = {
        "journeys": SUBJECTS,
        "wall_s": round(wall, 1),
        "journeys_per_min": round(SUBJECTS / wall * 60, 2),
        "journey_p50_s": round(statistics.median(times), 1),
        "journey_p95_s": round(_percentile(times, 0.95), 1),
        "training_steps": TRAINING_STEPS,
        "images_per_journey": IMAGES_PER_STYLE,
    }
    print(f"\nload: {json.dumps(figures)}")
    report = os.environ.get("LIKENESS_CHAOS_REPORT")
    if report:
        Path(report).write_text(json.dumps(figures, indent=2) + "\n")
