"""checkov finds nothing to fail in the rendered manifests of any scenario.

checkov's own dependency pins clash with the project's, so it lives in a separate tool environment,
`.venv-tools` (`make tools`); LIKENESS_CHECKOV may name another binary. Without it this test fails: a
missing scanner must not look like a clean scan. One checkov run covers every scenario (its start-up costs
more than its checks), plus a deliberately insecure canary manifest that must fail, so a pass means the
scan really ran. The checks skipped chart-wide are configured, each with its justification, in
deploy/helm/likeness/.checkov.yaml.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "helm" / "likeness" / ".checkov.yaml"
CANARY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: canary, namespace: likeness}
spec:
  selector: {matchLabels: {app: canary}}
  template:
    metadata: {labels: {app: canary}}
    spec:
      containers:
        - name: canary
          image: example/canary:latest
          securityContext: {privileged: true}
          env:
            - name: LIKENESS_S3_SECRET_KEY
              valueFrom: {secretKeyRef: {name: canary, key: s3_secret_key}}
"""
SKIPPED_IN_CONFIG = {"CKV_K8S_43", "CKV_K8S_15"}
#: Checks that must pass on every scenario's manifests, never skipped (secrets as files, not variables).
MUST_PASS = {"CKV_K8S_35"}


def checkov_binary() -> Path:
    binary = Path(os.environ.get("LIKENESS_CHECKOV", ROOT / ".venv-tools" / "bin" / "checkov"))
    if not binary.exists():
        pytest.fail(f"checkov not found at {binary}: run `make tools` (or set LIKENESS_CHECKOV)")
    return binary


@pytest.fixture(scope="module")
def scan(renders: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("checkov")
    for name, rendered in renders.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump_all(rendered.everything, sort_keys=False))
    (folder / "canary.yaml").write_text(CANARY)
    command = [
        str(checkov_binary()),
        "--directory", str(folder),
        "--config-file", str(CONFIG),
        "--output", "json",
        "--skip-download",  # offline: no policy or guideline downloads
    ]  # fmt: skip
    environment = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    result = subprocess.run(
        command, capture_output=True, text=True, env=environment, timeout=300, check=False
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]  # 1: some check failed (the canary's)
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def failures_by_file(report: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for check in report["results"]["failed_checks"]:
        name = Path(check["file_path"]).stem
        found.setdefault(name, []).append(f"{check['check_id']} {check['resource']}: {check['check_name']}")
    return found


def test_no_scenario_fails_a_check(scan: dict[str, Any], renders: dict[str, Any]) -> None:
    failures = failures_by_file(scan)
    failures.pop("canary", None)
    assert failures == {}
    scanned = {Path(check["file_path"]).stem for check in scan["results"]["passed_checks"]}
    assert scanned == set(renders) | {"canary"}, "every scenario was scanned"
    assert scan["summary"]["parsing_errors"] == 0


def test_the_scan_can_fail(scan: dict[str, Any]) -> None:
    failed = {line.split()[0] for line in failures_by_file(scan).get("canary", [])}
    assert {"CKV_K8S_16", "CKV_K8S_14", "CKV_K8S_22"} <= failed  # privileged, :latest, writable root fs
    assert failed >= MUST_PASS  # a secret as an environment variable


def test_secrets_as_files_is_checked_and_passes_on_every_workload(
    scan: dict[str, Any], renders: dict[str, Any]
) -> None:
    """CKV_K8S_35 ran on every Deployment, the bootstrap Job and the test pod of every scenario, and passed:
    no skip hides it."""
    passed: dict[str, set[str]] = {}
    for check in scan["results"]["passed_checks"]:
        if check["check_id"] in MUST_PASS:
            passed.setdefault(Path(check["file_path"]).stem, set()).add(check["resource"])
    for name, rendered in renders.items():
        workloads = {
            f"{doc['kind']}.{doc['metadata']['namespace']}.{doc['metadata']['name']}"
            for doc in rendered.everything
            if doc["kind"] in ("Deployment", "Job", "Pod")
        }
        assert workloads, name
        assert workloads <= passed.get(name, set()), name
    config = yaml.safe_load(CONFIG.read_text())
    assert not MUST_PASS & set(config["skip-check"])


def test_skips_are_few_and_justified(scan: dict[str, Any]) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert set(config["skip-check"]) == SKIPPED_IN_CONFIG
    text = CONFIG.read_text()
    for check in SKIPPED_IN_CONFIG:
        justification = text.split(f"# {check} ", 1)[1].split("\n  - ", 1)[0]
        assert len(justification) > 200, f"{check} needs a written justification"
    # Skips on single resources are annotations with a reason: only the helm test pod's probes.
    for check in scan["results"]["skipped_checks"]:
        assert check["check_id"] in {"CKV_K8S_8", "CKV_K8S_9"}, check["check_id"]
        assert check["resource"].startswith("Pod.likeness."), check["resource"]
        assert check["resource"].endswith("-readiness-test"), check["resource"]
        assert len(check["check_result"]["suppress_comment"]) > 30, check["check_id"]
