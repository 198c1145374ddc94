"""The `likeness` command as a user runs it: separate processes for `dev up`, `status`, `token`, `down`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from likeness_cli.errors import EXIT_NOT_RUNNING, EXIT_OK
from likeness_cli.main import build_parser
from likeness_dev.procs import is_alive
from likeness_dev.stackfile import read_dev_env, read_stack_file, write_dev_env
from likeness_dev.tokens import ALL_SCOPES

LIKENESS = Path(sys.executable).parent / "likeness"


def _likeness(*args: str, project: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The command as a developer's shell runs it: without LIKENESS_ENV (which means production), so the dev
    kit must say development itself wherever it needs it."""
    command = [str(LIKENESS)] if LIKENESS.exists() else [sys.executable, "-m", "likeness_cli.main"]
    env = {key: value for key, value in os.environ.items() if key != "LIKENESS_ENV"}
    return subprocess.run(
        [*command, *args], cwd=project, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_dev_up_infra_only_then_status_token_and_down(tmp_path: Path, server_process: None) -> None:
    (tmp_path / ".git").mkdir()  # the project root is found from the cwd
    up = _likeness("dev", "up", "--infra-only", project=tmp_path)
    try:
        assert up.returncode == EXIT_OK, up.stderr
        state = tmp_path / ".likeness"
        record = read_stack_file(state)
        assert record is not None
        assert {entry["name"] for entry in record["processes"]} == {"nats", "s3", "vault"}
        env = read_dev_env(state)
        assert env["LIKENESS_S3_ENDPOINT"] in up.stdout

        status = _likeness("dev", "status", project=tmp_path)
        assert status.returncode == EXIT_OK, status.stdout + status.stderr
        assert status.stdout.count("healthy") == 3

        again = _likeness("dev", "up", "--infra-only", project=tmp_path)
        assert again.returncode != EXIT_OK
        assert "already running" in again.stderr

        token = _likeness(
            "dev", "token", "--tenant", "acme", "--scopes", "photos:read renders:read", project=tmp_path
        )
        assert token.returncode == EXIT_OK, token.stderr
        claims = jwt.decode(
            token.stdout.strip(), env["LIKENESS_JWT_DEV_SECRET"], algorithms=["HS256"], audience="likeness"
        )
        assert claims["tenant"] == "acme"
        assert claims["scope"] == "photos:read renders:read"
    finally:
        down = _likeness("dev", "down", project=tmp_path)
    assert down.returncode == EXIT_OK, down.stderr
    assert not any(is_alive(entry["pid"], entry["start_ticks"]) for entry in record["processes"])
    assert read_stack_file(tmp_path / ".likeness") is None
    assert not (tmp_path / ".likeness" / "dev.env").exists()
    assert _likeness("dev", "status", project=tmp_path).returncode == EXIT_NOT_RUNNING


def test_token_without_a_stack_is_a_clear_error(tmp_path: Path) -> None:
    result = _likeness("dev", "token", "--tenant", "dev", "--project-dir", str(tmp_path), project=tmp_path)
    assert result.returncode == 1
    assert "likeness dev up" in result.stderr
    assert result.stdout == ""


def test_seed_without_a_stack_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    result = _likeness("dev", "seed", "--project-dir", str(tmp_path), project=tmp_path)
    assert result.returncode == 1
    assert "likeness dev up" in result.stderr
    assert not (tmp_path / ".likeness").exists()


def test_token_reads_the_secret_from_dev_env(tmp_path: Path) -> None:
    write_dev_env(
        tmp_path / ".likeness",
        {"LIKENESS_JWT_DEV_SECRET": "s3cr3t-with-'quote' and space, long enough for HS256"},
    )
    result = _likeness("dev", "token", "--subject", "u1", "--project-dir", str(tmp_path), project=tmp_path)
    assert result.returncode == EXIT_OK, result.stderr
    claims = jwt.decode(
        result.stdout.strip(),
        "s3cr3t-with-'quote' and space, long enough for HS256",
        algorithms=["HS256"],
        audience="likeness",
    )
    assert claims["tenant"] == "dev"
    assert claims["sub"] == "u1"
    assert str(claims["scope"]).split() == list(ALL_SCOPES)


def test_down_and_status_without_a_stack(tmp_path: Path) -> None:
    assert _likeness("dev", "down", "--project-dir", str(tmp_path), project=tmp_path).returncode == EXIT_OK
    status = _likeness("dev", "status", "--project-dir", str(tmp_path), project=tmp_path)
    assert status.returncode == EXIT_NOT_RUNNING
    assert "likeness dev up" in status.stderr


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as usage:
        build_parser().parse_args(["model", "tiny"])  # --out is required
    assert usage.value.code == 2
    args = build_parser().parse_args(["model", "tiny", "--out", "x", "--seed", "7"])
    assert args.seed == 7
    assert args.out == Path("x")
