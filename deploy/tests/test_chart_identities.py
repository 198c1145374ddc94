"""One identity per process kind, the same in the chart, the code and deploy/vault.

Each process runs as an identity (`gateway`, `retention`, `ingest`, `trainer`, `trainer-worker`, `renderer`,
`renderer-worker`, and `bootstrap` for provisioning) and holds that identity's credentials only: its NATS user
and S3 identity (credentials.<identity>, the identities of `likeness.provisioning`), and, for those using
Vault, a ServiceAccount `<fullname>-<identity>` that deploy/vault binds to role `likeness-<identity>` and
policy `likeness-<identity>`. A GPU worker is an identity of its own: it does not share its API's account,
so it cannot log in with its API's Vault role, nor its API with the worker's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from likeness.provisioning import IDENTITIES

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "deploy" / "helm" / "likeness"
VAULT_ROLES = ROOT / "deploy" / "vault" / "roles"
RELEASE = "demo"
PREFIX = f"{RELEASE}-likeness"

Manifest = dict[str, Any]
Rendered = Any  # conftest.Rendered


def vault_logins(rendered: Rendered) -> dict[str, str]:
    """Vault role -> the ServiceAccount of the pods that log in with it."""
    logins: dict[str, str] = {}
    for doc in rendered.of_kind("Deployment") + rendered.of_kind("Job"):
        spec = doc["spec"]["template"]["spec"]
        env = {entry["name"]: entry.get("value") for entry in spec["containers"][0]["env"]}
        if "LIKENESS_VAULT_ROLE" in env:
            role = env["LIKENESS_VAULT_ROLE"]
            assert logins.get(role, spec["serviceAccountName"]) == spec["serviceAccountName"], role
            logins[role] = spec["serviceAccountName"]
    return logins


def bound_accounts(prefix: str) -> dict[str, str]:
    """Vault role -> the ServiceAccount deploy/vault binds it to, for the chart's fullname `prefix`."""
    bound = {}
    for path in sorted(VAULT_ROLES.glob("*.json")):
        role = json.loads(path.read_text())
        (account,) = role["bound_service_account_names"]
        (policy,) = role["token_policies"]
        assert policy == f"likeness-{path.stem}", path.name  # one policy per identity, named after it
        assert role["audience"] == "${AUDIENCE}", path.name  # the chart's vault.tokenAudience
        bound[f"likeness-{path.stem}"] = account.replace("${SERVICE_ACCOUNT_PREFIX}", prefix)
    return bound


def test_each_vault_role_is_used_by_exactly_the_account_it_is_bound_to(
    scenario: tuple[str, Rendered],
) -> None:
    name, rendered = scenario
    logins = vault_logins(rendered)
    bound = bound_accounts(PREFIX)
    if name == "workers-disabled":
        bound = {role: account for role, account in bound.items() if not role.endswith("-worker")}
    assert logins == bound
    assert len(set(logins.values())) == len(logins), "no two roles share an account"


def test_the_vault_check_can_fail(renders: dict[str, Rendered]) -> None:
    """Workers sharing their API's account (as before) would be caught."""
    rendered = renders["defaults"]
    worker = rendered.deployment("trainer-work")["spec"]["template"]["spec"]
    original = worker["serviceAccountName"]
    worker["serviceAccountName"] = f"{PREFIX}-trainer"
    try:
        assert vault_logins(rendered) != bound_accounts(PREFIX)
    finally:
        worker["serviceAccountName"] = original


def test_the_chart_has_credentials_for_every_identity_of_the_code() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert set(values["credentials"]) == {spec.name for spec in IDENTITIES}
    # The production example names each NATS user after its identity, as the shipped allow-lists do.
    production = yaml.safe_load((CHART_DIR / "values-production.yaml").read_text())
    assert {name: entry["natsUser"] for name, entry in production["credentials"].items()} == {
        spec.name: spec.name for spec in IDENTITIES
    }


def test_s3_credentials_go_to_the_identities_that_have_an_s3_identity(renders: dict[str, Rendered]) -> None:
    """The gateway holds no storage right in the code (no S3 identity): it gets no S3 keys either."""
    rendered = renders["defaults"]
    has_s3 = {spec.name for spec in IDENTITIES if spec.s3 is not None}
    workloads = {"gateway": "gateway", "retention": "retention", "ingest": "ingest", "bootstrap": "bootstrap"}
    workloads |= {f"{s}-serve": s for s in ("trainer", "renderer")}
    workloads |= {f"{s}-work": f"{s}-worker" for s in ("trainer", "renderer")}
    for kind, identity in workloads.items():
        files = rendered.secret_files(kind)
        assert ("s3_secret_key" in files) == (identity in has_s3), kind
        assert ("s3_access_key" in files) == (identity in has_s3), kind
