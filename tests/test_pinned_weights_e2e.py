"""Workers serve only the pinned base weights: the real trainer and renderer worker processes
(`python -m <service> work`, as the dev stack and the chart start them) refuse to start when one byte of
one weight file differs from the manifest, naming the file, before they load or connect to anything; with
the weights as pinned they start and report how long the check took (`likeness_weights_verify_seconds`).

The refused workers get the running servers' settings, so a worker that skipped the check would start
and keep running: the test would see it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from likeness_dev.health import check_http
from likeness_dev.ports import free_port
from likeness_ml.tiny_model import write_tiny_pipeline

WORKERS = ("trainer", "renderer")
TAMPERED = "unet/diffusion_pytorch_model.safetensors"
#: Generous: the workers import torch and diffusers, and load the model, on 2 slow shared cores.
START_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def pinned_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_pipeline(tmp_path_factory.mktemp("pinned") / "tiny")


def _environment(infra_env: dict[str, str], model: Path, metrics_port: int) -> dict[str, str]:
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("LIKENESS_")}
    return (
        inherited
        | infra_env
        | {
            "LIKENESS_ENV": "development",
            "LIKENESS_BASE_MODEL": str(model),
            "LIKENESS_METRICS_PORT": str(metrics_port),
        }
    )


def _start(service: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", service, "work"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    output, _ = process.communicate()
    return output


def test_one_changed_byte_of_one_weight_file_stops_every_worker_from_starting(
    server_process: None, infra_env: dict[str, str], pinned_model: Path, tmp_path: Path
) -> None:
    tampered = shutil.copytree(pinned_model, tmp_path / "tampered")
    weights = bytearray((tampered / TAMPERED).read_bytes())
    weights[len(weights) // 2] ^= 0x01  # one bit of one byte: same size, different digest
    (tampered / TAMPERED).write_bytes(bytes(weights))
    started = {
        service: _start(service, _environment(infra_env, tampered, free_port()), tmp_path)
        for service in WORKERS
    }
    outcomes: dict[str, tuple[int | None, str]] = {}
    for service, process in started.items():
        try:
            output, _ = process.communicate(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            output = _stop(process) + f"\nstill running after {START_TIMEOUT} s: it took the changed weights"
        outcomes[service] = (process.returncode, output)
    for service, (code, output) in outcomes.items():
        assert code == 1, f"{service} worker started on changed weights:\n{output[-3000:]}"
        assert f"{service}-worker refuses to start: base model not pinned" in output, output[-3000:]
        assert f"SHA-256 differs from its manifest: {TAMPERED}" in output, output[-3000:]
        assert "Traceback" not in output, f"{service}: a refusal is one clear line:\n{output[-3000:]}"
        assert "worker started" not in output, f"{service} connected before checking its weights"


@pytest.mark.parametrize("service", WORKERS)
def test_a_worker_on_its_pinned_weights_starts_and_reports_the_check_as_a_metric(
    server_process: None, infra_env: dict[str, str], pinned_model: Path, tmp_path: Path, service: str
) -> None:
    port = free_port()
    process = _start(service, _environment(infra_env, pinned_model, port), tmp_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while check_http(port, "/healthz") is not None:
            assert process.poll() is None, f"{service} worker exited:\n{_stop(process)[-3000:]}"
            assert time.monotonic() < deadline, f"{service} worker not ready in {START_TIMEOUT} s"
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            metrics = response.read().decode()
    finally:
        _stop(process)
    assert _sample(metrics, "likeness_weights_verify_seconds") > 0
    files = [p for p in pinned_model.rglob("*") if p.is_file() and p.name != "likeness-manifest.json"]
    assert _sample(metrics, "likeness_weights_verified_bytes") == sum(p.stat().st_size for p in files)


def _sample(metrics: str, name: str) -> float:
    prefix = name + '{weights="base_model"} '
    values = [float(line[len(prefix) :]) for line in metrics.splitlines() if line.startswith(prefix)]
    assert len(values) == 1, f"{name} is exported once for the base model"
    return values[0]
