"""The gateway's contract, tried as a client would: `schemathesis run` with every check (its default) and
every phase (examples, coverage, fuzzing, stateful) against the test stack, through the committed
`schemathesis.toml` and its hooks, exactly as the by-hand run against the dev stack (docs/gateway.md).

The run must find nothing, and every operation of the schema must have answered 2xx at least once: a
contract run that only ever sees 404s proves little. Seeding makes that possible (`likeness_dev.seed`: a
trained subject, a render, an erasure, team looks), in a tenant of this test's own.

Bounded: a few dozen cases per operation instead of schemathesis' hundred, so it takes a minute or two on
two cores; the by-hand run uses the defaults.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from likeness_dev.journey import GatewayClient
from likeness_dev.seed import PERSON_TOKEN_VARIABLE, Seed, seed
from likeness_dev.stack import DevStack
from likeness_dev.tokens import ALL_SCOPES

REPO = Path(__file__).resolve().parents[1]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
#: Cases per operation and phase (schemathesis' default is 100).
MAX_EXAMPLES = 25
PHASES = ("examples", "coverage", "fuzzing", "stateful")


@pytest.fixture(scope="module")
def tenant() -> str:
    return f"contract-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def token(stack: DevStack, tenant: str) -> str:
    return stack.mint_token(tenant=tenant, scopes=ALL_SCOPES)


@pytest.fixture(scope="module")
def seeded(stack: DevStack, token: str) -> Iterator[Seed]:
    client = GatewayClient(stack.gateway_url, token)
    try:
        # The test stack trains from two photos (LIKENESS_MIN_PHOTOS_FOR_TRAINING, tests/conftest.py).
        made = seed(client, photos=2, say=lambda line: print(f"[seed] {line}", flush=True))
        yield made
        # The run starts trainings and renders of these subjects: erasing them cancels what is still
        # queued, so the stack other tests share is not kept busy.
        for subject in (made.subject_id, made.upload_subject_id, made.consent_subject_id):
            client.call("DELETE", f"/v1/subjects/{subject}", expect=(202,))
    finally:
        client.close()


def _run_schemathesis(
    stack: DevStack, token: str, seeded: Seed, out: Path, tenant: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **seeded.as_env(),
        "LIKENESS_DEV_TOKEN": token,
        # The hooks read the catalog a render may choose from (`GET /v1/styles`), as a client does.
        "LIKENESS_GATEWAY_URL": stack.gateway_url,
        # The processing log answers only the person's own token (`schemathesis.toml`).
        PERSON_TOKEN_VARIABLE: stack.mint_token(tenant=tenant, scopes=ALL_SCOPES, subject=seeded.subject_id),
        "LIKENESS_CONTRACT_ANSWERS": str(out / "answers.json"),
    }
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{stack.gateway_url}/openapi.json",
        # Every check: schemathesis' default, and what schemathesis.toml keeps (`--checks all` would also
        # override the one check that file turns off for one read; the test below holds the rest on).
        "--phases",
        ",".join(PHASES),
        "--max-examples",
        str(MAX_EXAMPLES),
        # The JSON report holds counts and failures, never a response body (those hold decrypted images).
        "--report",
        "json",
        "--report-json-path",
        str(out / "report.json"),
        "--generation-database",
        "none",
        "--no-color",
    ]
    # From the repository root, where `schemathesis run` finds schemathesis.toml.
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_the_live_api_keeps_its_contract(
    stack: DevStack, tenant: str, token: str, seeded: Seed, tmp_path: Path
) -> None:
    run = _run_schemathesis(stack, token, seeded, tmp_path, tenant)
    output = (run.stdout + run.stderr)[-20_000:]
    report: dict[str, Any] = json.loads((tmp_path / "report.json").read_text())
    assert report["failures"] == [], output
    assert report["errors"] == [], output
    assert run.returncode == 0, output
    assert {phase: report["phases"][phase]["status"] for phase in PHASES} == dict.fromkeys(PHASES, "success")
    assert report["operations"]["selected"] == report["operations"]["tested"] >= 29

    answers: dict[str, dict[str, int]] = json.loads((tmp_path / "answers.json").read_text())
    assert len(answers) == report["operations"]["selected"]
    never_2xx = sorted(
        label for label, statuses in answers.items() if not any(status.startswith("2") for status in statuses)
    )
    assert never_2xx == [], json.dumps(answers, indent=1)


#: The one check `schemathesis.toml` turns off, and for which operation (its section says why).
CHECKS_OFF = {("GET /v1/subjects/{subject_id}/consents", "use_after_free")}


def test_the_contract_run_keeps_every_check_but_one_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """schemathesis.toml as the run loads it: every check on for every operation of the gateway's schema,
    but `use_after_free` on the consent record's read (a withdrawal keeps the record)."""
    from schemathesis.checks import CHECKS
    from schemathesis.config import SchemathesisConfig
    from schemathesis.config._checks import _BUILTIN_CHECK_NAMES
    from schemathesis.openapi import from_dict

    from gateway.app import create_app
    from gateway.config import GatewaySettings

    for name in re.findall(r"\$\{(\w+)\}", (REPO / "schemathesis.toml").read_text()):
        monkeypatch.setenv(name, "stand-in")
    project = SchemathesisConfig.from_path(REPO / "schemathesis.toml").projects.default
    names = (set(_BUILTIN_CHECK_NAMES) | set(CHECKS.get_all_names())) - {"max_response_time"}
    schema = from_dict(create_app(GatewaySettings(jwt_dev_secret="x" * 40)).openapi())
    off = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        for phase in PHASES:
            checks = project.checks_config_for(operation=operation, phase=phase)
            off |= {(operation.label, name) for name in names if not checks.get_by_name(name=name).enabled}
    assert off == CHECKS_OFF
