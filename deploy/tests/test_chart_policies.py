"""The access policies the chart ships (files/policies/) are exactly what `likeness bootstrap` renders now.

Operators apply them to nats-server (its authorization block) and to S3 (IAM policies for AWS or MinIO, the
SeaweedFS identities); they come from the code's one description of who may do what
(`likeness.provisioning`, `likeness.access_policies`). Each file is rendered again here through the CLI an
operator would run, and any difference fails: a change to an identity's rights cannot ship without the
policies that enforce it.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
import yaml

from likeness.provisioning import DEFAULT_S3_BUCKET, IDENTITIES
from likeness_cli.main import main

POLICIES = Path(__file__).resolve().parents[1] / "helm" / "likeness" / "files" / "policies"
#: Each shipped file and the `likeness bootstrap` command that renders it.
RENDERED_BY = {
    "nats-authorization.conf": ["bootstrap", "nats-config"],
    "iam-policies.json": ["bootstrap", "iam-policies"],
    "bucket-policy.json": ["bootstrap", "bucket-policy"],
    "seaweedfs-identities.json": ["bootstrap", "s3-identities"],
}


def rendered_now(command: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(command) == 0
    return capsys.readouterr().out


def drift(shipped: str, current: str, name: str) -> list[str]:
    """The lines a shipped file differs by from what the code renders now (empty: none)."""
    return list(difflib.unified_diff(shipped.splitlines(), current.splitlines(), name, "now", lineterm=""))


@pytest.mark.parametrize("name", sorted(RENDERED_BY))
def test_shipped_policies_are_what_the_code_renders(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    current = rendered_now(RENDERED_BY[name], capsys)
    differences = drift((POLICIES / name).read_text(), current, name)
    command = " ".join(["likeness", *RENDERED_BY[name]])
    assert differences == [], f"run `{command} > deploy/helm/likeness/files/policies/{name}`"


def test_the_drift_check_can_fail(capsys: pytest.CaptureFixture[str]) -> None:
    """One identity's right added by hand (or taken away in the code) is a difference."""
    current = rendered_now(RENDERED_BY["nats-authorization.conf"], capsys)
    widened = current.replace(
        '"$KV.gateway_idempotency.>",', '"$KV.gateway_idempotency.>",\n "$KV.renders.>",'
    )
    assert widened != current
    assert drift(widened, current, "nats-authorization.conf")


def test_every_file_is_shipped_and_names_every_identity() -> None:
    assert {path.name for path in POLICIES.iterdir()} == set(RENDERED_BY) | {"README.md"}
    authorization = (POLICIES / "nats-authorization.conf").read_text()
    for spec in IDENTITIES:  # a NATS user per identity, named after it (as the chart's natsUser values)
        assert f'user: "{spec.name}"' in authorization, spec.name


def test_they_are_rendered_for_the_charts_bucket() -> None:
    """The policies name the default bucket, which is the chart's default s3.bucket."""
    values = yaml.safe_load((POLICIES.parents[1] / "values.yaml").read_text())
    assert values["s3"]["bucket"] == DEFAULT_S3_BUCKET
    assert f"arn:aws:s3:::{DEFAULT_S3_BUCKET}/" in (POLICIES / "iam-policies.json").read_text()
