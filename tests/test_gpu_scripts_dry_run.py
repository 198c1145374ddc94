"""The GPU scripts' CPU dry runs: each runs the same code path as on a GPU, on tiny models, so a script a
short GPU lease depends on is known to work before a device is lent.

bench/gpu_journey.sh runs with a budget so small that training stops after the few steps it always measures
and rendering after two styles: the extrapolation a GPU run falls back on is exercised too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PHASES = ("build", "class_images", "train", "render", "post_denoise", "instant", "journey")


def _run(tmp_path: Path, *command: str) -> tuple[dict[str, Any], str]:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        ["bash", *command], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]), done.stdout


def test_the_journey_dry_run_times_every_phase_of_both_families(tmp_path: Path) -> None:
    summary, stdout = _run(tmp_path, "bench/gpu_journey.sh", "--cpu", "--tiny", "--budget-s", "0.001")

    assert summary["bench"] == "gpu_journey"
    assert set(summary["journeys"]) == {"sd15", "sdxl"}
    assert {row["model"] for row in summary["journeys"].values()} == {"tiny", "tiny_sdxl"}
    for family in ("sd15", "sdxl"):
        phases = {p["phase"]: p for p in summary["phases"] if p["family"] == family}
        assert tuple(phases) == PHASES
        train, render, journey = phases["train"], phases["render"], phases["journey"]
        # Stopped by the budget after the steps always measured, and extrapolated from them, labelled.
        assert train["extrapolated"]
        assert train["measured_steps"] == 3 < train["steps"]
        assert train["seconds"] > train["measured_train_s"] > 0
        assert render["extrapolated"]
        assert render["measured_styles"] == 2
        assert render["images"] == 40
        assert journey["seconds"] == pytest.approx(train["seconds"] + render["seconds"], abs=0.02)
        assert journey["extrapolated"]
        assert phases["class_images"]["counted"] is False
        assert phases["post_denoise"]["ms_per_image"] > 0
        assert phases["post_denoise"]["c2pa"]
        assert phases["instant"]["images"] == 4
        assert phases["instant"]["seconds"] > 0
    assert summary["goals"]["journey_s"] == {"sd15": 90.0, "sdxl": 300.0}
    assert summary["instant_s"] == summary["journeys"]["sdxl"]["instant_s"]
    # Every phase went out as soon as it was known: printed, and appended to $OUT's phases file.
    written = [json.loads(line) for line in (tmp_path / "gpu_journey_phases.jsonl").read_text().splitlines()]
    assert written == summary["phases"]
    assert "extrapolated past --budget-s" in stdout


def test_the_renderer_dry_run_compares_with_vanilla_diffusers_and_times_post_denoising(
    tmp_path: Path,
) -> None:
    summary, _ = _run(tmp_path, "bench/gpu_renderer.sh", "--dry-run")

    assert summary["bench"] == "gpu_renderer"
    assert summary["restored_exactly"] is True
    rates = summary["unet_steps_per_s_batch1"]
    assert rates["ours"] > 0
    assert rates["vanilla"] > 0
    assert summary["unet_of_vanilla"] == pytest.approx(rates["ours"] / rates["vanilla"], rel=0.02)
    post = summary["post_denoise"]
    assert post["ms_per_image"] == pytest.approx(post["decode_ms"] + post["mark_and_seal_ms"], abs=0.2)
    assert post["mark_and_seal_ms"] > 0
    assert post["c2pa"] is True
    assert summary["goals"] == {"unet_of_vanilla": 0.9, "post_denoise_ms": 50.0}


def test_the_trainer_dry_run_trains_through_the_production_loop(tmp_path: Path) -> None:
    summary, stdout = _run(
        tmp_path, "bench/gpu_trainer.sh", "--cpu", "--tiny", "--steps", "4", "--no-baselines"
    )

    assert summary["bench"] == "gpu_trainer"
    assert summary["steps_per_s"] > 0
    assert summary["job_steps_per_s"] > 0
    assert "whole job" in stdout
