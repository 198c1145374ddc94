"""Start-up check of pinned weights: `verify_manifest` (sizes, then every file's SHA-256 as a stream,
files in parallel threads) against `sha256sum` over the same files, on a base-model-shaped directory
(UNet, two text encoders, VAE, in SDXL's proportions). Both read from the page cache (the files were just
written), so this measures hashing, not the disk; a cold PVC adds its read time to both.

The goal: at least 0.9 of sha256sum's throughput (the check must not be what makes a worker slow to start).

    .venv/bin/python bench/manifest.py [--mib 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from likeness_ml.digests import file_sha256
from likeness_ml.model_manifest import verify_manifest, write_manifest

GOAL = 0.9
#: SDXL's files in fp16, as shares of the whole (UNet 5.1 GB, text encoder 2 1.4 GB, 0.25, VAE 0.17).
_SHARES = {
    "unet/diffusion_pytorch_model.safetensors": 0.73,
    "text_encoder_2/model.safetensors": 0.20,
    "text_encoder/model.safetensors": 0.04,
    "vae/diffusion_pytorch_model.safetensors": 0.03,
}


def write_weights(root: Path, mib: int) -> list[Path]:
    block = os.urandom(1 << 20)
    paths = []
    for name, share in _SHARES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for _ in range(max(1, round(mib * share))):
                out.write(block)
        paths.append(path)
    return paths


def best_seconds(run: Callable[[], object], rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        began = time.perf_counter()
        run()
        timings.append(time.perf_counter() - began)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="likeness-bench-manifest-"))
    try:
        paths = write_weights(root, args.mib)
        write_manifest(root)
        size_mib = sum(p.stat().st_size for p in paths) / (1 << 20)
        command = ["sha256sum", *map(str, paths)]
        baseline = best_seconds(lambda: subprocess.run(command, check=True, capture_output=True), args.rounds)
        ours = best_seconds(lambda: verify_manifest(root), args.rounds)
        # The same streaming hash, one file after another: what the parallel threads add.
        sequential = best_seconds(lambda: [file_sha256(p) for p in paths], args.rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio = baseline / ours
    print(f"pinned weights vs sha256sum, {size_mib:.0f} MiB in {len(paths)} files, best of {args.rounds}")
    print(f"{'':<20}{'MiB/s':>10}{'seconds':>10}")
    print(f"{'verify_manifest':<20}{size_mib / ours:>10.0f}{ours:>10.2f}")
    print(f"{'one thread':<20}{size_mib / sequential:>10.0f}{sequential:>10.2f}")
    print(f"{'sha256sum':<20}{size_mib / baseline:>10.0f}{baseline:>10.2f}")
    print(f"ratio (sha256sum time / ours): {ratio:.2f}   CPUs: {os.cpu_count()}")
    figures = {
        "bench": "manifest",
        "ratio": round(ratio, 3),
        "goal": GOAL,
        "mib_per_s": round(size_mib / ours, 1),
        "sha256sum_mib_per_s": round(size_mib / baseline, 1),
        "one_thread_mib_per_s": round(size_mib / sequential, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
