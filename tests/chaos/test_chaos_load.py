"""Twenty people through the whole journey at once on the tiny model, with no error.

Each journey (create, upload, train, render, download, erase, then every read answers 404/410) runs in
its own thread against the one stack (`likeness_dev.load`). The throughput and journey times are printed
(`-s` shows them) and written to `$LIKENESS_CHAOS_REPORT` when set; they are reported, not asserted. The
same load runs on the two-replica, clustered stack in test_chaos_cluster.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from likeness_dev.load import run_load
from likeness_dev.samples import sample_photos

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

SUBJECTS = 20
TRAINING_STEPS = 4
IMAGES_PER_STYLE = 2


def test_twenty_journeys_at_once_complete_without_error(kit: Any, check_load: Any) -> None:
    photos = sample_photos(2)
    token = kit.stack.mint_token()
    kit.ledger.add_token(token)
    outcome = run_load(
        [kit.stack.gateway_url],
        token,
        photos,
        people=SUBJECTS,
        training_steps=TRAINING_STEPS,
        images_per_style=IMAGES_PER_STYLE,
    )
    check_load(kit, photos, outcome, SUBJECTS, IMAGES_PER_STYLE)

    figures = outcome.figures(TRAINING_STEPS, IMAGES_PER_STYLE)
    print(f"\nload: {json.dumps(figures)}")
    report = os.environ.get("LIKENESS_CHAOS_REPORT")
    if report:
        Path(report).write_text(json.dumps(figures, indent=2) + "\n")
