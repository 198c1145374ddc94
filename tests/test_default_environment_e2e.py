"""A process started without `LIKENESS_ENV` is production: every service of the stack, started as the dev
stack starts it (`python -m <service> <role>`) but with nothing saying which environment it is in, refuses
its development secrets and plaintext endpoints instead of running on them (issue 15: an image run outside
the chart must not silently accept dev secrets). The dev stack, the tests and the benchmarks say
`LIKENESS_ENV=development` explicitly; every other test of the stack shows that this still works.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from likeness_dev.stack import SERVICES, ServiceSpec

#: Generous: trainer and renderer import torch and diffusers before they read their settings.
START_TIMEOUT = 240


def _environment_without_likeness_settings() -> dict[str, str]:
    """The test process's environment minus every LIKENESS_* variable (LIKENESS_ENV among them)."""
    return {key: value for key, value in os.environ.items() if not key.startswith("LIKENESS_")}


def test_every_service_started_without_likeness_env_refuses_development_values(
    server_process: None, tmp_path: Path
) -> None:
    env = _environment_without_likeness_settings()
    assert "LIKENESS_ENV" not in env
    started: dict[str, tuple[ServiceSpec, subprocess.Popen[str]]] = {}
    for spec in SERVICES:  # all at once: each spends its time importing
        started[spec.name] = (
            spec,
            subprocess.Popen(
                spec.command,
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
    outcomes: dict[str, tuple[int | None, str]] = {}
    try:
        for name, (_, process) in started.items():
            try:
                output, _ = process.communicate(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                output = f"still running after {START_TIMEOUT} s: it accepted its settings"
            outcomes[name] = (process.returncode, output)
    finally:
        for _, process in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for name, (code, output) in outcomes.items():
        assert code not in (0, None), (
            f"{name} started without LIKENESS_ENV on development values:\n{output[-2000:]}"
        )
        assert "refusing production settings" in output, f"{name}: {output[-2000:]}"
        assert "is a development value" in output, f"{name} did not name its development secrets"
