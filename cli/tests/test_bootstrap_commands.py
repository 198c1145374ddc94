"""`likeness bootstrap`: provisioning with the bootstrap identity's secret files, and the rendered tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from likeness.access_policies import nats_permissions
from likeness.config import SECRETS_DIR_VARIABLE
from likeness.provisioning import BOOTSTRAP, IDENTITIES, identity
from likeness_cli.errors import EXIT_FAILED, EXIT_OK
from likeness_cli.main import main
from likeness_dev.infra import Infra


def likeness(*argv: str) -> int:
    return main(list(argv))


def _secrets(directory: Path, values: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        (directory / name).write_text(value)
    return directory


def test_nats_config_renders_one_user_per_identity_with_passwords_from_the_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert likeness("bootstrap", "nats-config") == EXIT_OK
    rendered = capsys.readouterr().out
    assert rendered.startswith("authorization {")
    for spec in IDENTITIES:
        assert f'user: "{spec.name}"' in rendered
        assert f"$LIKENESS_NATS_PASSWORD_{spec.name.upper().replace('-', '_')}" in rendered
    assert json.dumps(nats_permissions(identity("gateway")).publish_allow[0]) in rendered


def test_nats_config_takes_passwords_from_secret_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for spec in IDENTITIES:
        _secrets(tmp_path / spec.name, {"nats_password": f"pw-of-{spec.name}"})
    assert likeness("bootstrap", "nats-config", "--passwords-dir", str(tmp_path)) == EXIT_OK
    assert 'password: "pw-of-trainer-worker"' in capsys.readouterr().out


def test_a_missing_password_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert likeness("bootstrap", "nats-config", "--passwords-dir", str(tmp_path)) == EXIT_FAILED
    assert "nats_password" in capsys.readouterr().err


def test_s3_renders_agree_on_who_has_an_identity(capsys: pytest.CaptureFixture[str]) -> None:
    assert likeness("bootstrap", "s3-identities", "--bucket", "b") == EXIT_OK
    seaweed = json.loads(capsys.readouterr().out)
    names = {entry["name"] for entry in seaweed["identities"]}
    assert "gateway" not in names, "the gateway holds no storage right"
    assert {"retention", "ingest", "trainer-worker", "renderer-worker", BOOTSTRAP} <= names
    ingest = next(entry for entry in seaweed["identities"] if entry["name"] == "ingest")
    assert "Read:b/t/*/s/*/photos/*" in ingest["actions"]
    assert likeness("bootstrap", "iam-policies", "--bucket", "b") == EXIT_OK
    iam = json.loads(capsys.readouterr().out)
    versions = [
        name
        for name, policy in iam.items()
        for statement in policy["Statement"]
        if "s3:DeleteObjectVersion" in statement["Action"]
    ]
    # Retention, plus each GPU worker for what its own killed attempt left behind (provisioning.S3Access);
    # a person's per-item deletion is retention's (PurgeItem), never the renderer serve role's.
    assert sorted(versions) == ["renderer-worker", "retention", "trainer-worker"]
    assert likeness("bootstrap", "bucket-policy", "--bucket", "b") == EXIT_OK
    denied = json.loads(capsys.readouterr().out)["Statement"]
    assert all(statement["Effect"] == "Deny" for statement in denied)


def test_bootstrap_provisions_with_the_bootstrap_identitys_secret_files(
    infra: Infra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    own = infra.credentials(BOOTSTRAP)
    directory = _secrets(
        tmp_path / "secrets",
        {
            "nats_password": own.nats_password,
            "s3_access_key": own.s3_access_key,
            "s3_secret_key": own.s3_secret_key,
        },
    )
    monkeypatch.setenv(SECRETS_DIR_VARIABLE, str(directory))
    for name in (
        "LIKENESS_NATS_USER",
        "LIKENESS_NATS_PASSWORD",
        "LIKENESS_S3_ACCESS_KEY",
        "LIKENESS_S3_SECRET_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LIKENESS_NATS_URL", infra.endpoints.nats_address)
    monkeypatch.setenv("LIKENESS_S3_ENDPOINT", infra.endpoints.s3_endpoint)
    monkeypatch.setenv("LIKENESS_S3_BUCKET", infra.endpoints.s3_bucket)

    assert likeness("bootstrap") == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines, "it says what it did"
    assert all(line.startswith("unchanged") for line in lines), (
        "the session's servers were provisioned already"
    )

    (directory / "nats_password").write_text("not the password")
    assert likeness("bootstrap", "--nats-only") == EXIT_FAILED
    assert "could not provision" in capsys.readouterr().err


def test_bounds_that_name_nothing_or_are_too_small_are_refused_before_anything_is_touched(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No server listens there: a refusal that names the bounds was made before any connection.
    monkeypatch.setenv("LIKENESS_NATS_URL", "nats://127.0.0.1:9")
    monkeypatch.setenv("LIKENESS_STREAM_MAX_BYTES", json.dumps({"LIKENESS_EVENT": 2**30, "photos": 10}))
    monkeypatch.setenv("LIKENESS_STREAM_MAX_AGE_SECONDS", json.dumps({"subjects": 86400}))
    assert likeness("bootstrap", "--nats-only") == EXIT_FAILED
    error = capsys.readouterr().err
    assert "bootstrap bounds refused" in error
    assert "'LIKENESS_EVENT'" in error
    assert "'photos' must be at least 1 MiB" in error
    assert "no stream 'subjects' takes an age bound" in error
