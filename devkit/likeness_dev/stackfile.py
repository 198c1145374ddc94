"""Where a dev stack keeps its state (`<project>/.likeness/`) and the files other commands read:
`stack.json` (processes to stop, secrets to mint tokens with) and `dev.env` (settings to run a service
by hand). Both hold secrets and are written readable by their owner only."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from likeness_cli.local_settings import DEV_ENV_FILENAME, find_project_dir, read_dev_env, state_dir_of

STACK_FILENAME = "stack.json"
#: Under the state dir: one directory of secret files per service process (its LIKENESS_SECRETS_DIR).
SECRETS_DIRNAME = "secrets"
STACK_FILE_VERSION = 1


class StackFileError(RuntimeError):
    """stack.json or dev.env is missing or unreadable."""


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(scratch, path)


def write_stack_file(state_dir: Path, record: Mapping[str, Any]) -> Path:
    path = state_dir / STACK_FILENAME
    write_private(path, json.dumps({"version": STACK_FILE_VERSION, **record}, indent=2) + "\n")
    return path


def read_stack_file(state_dir: Path) -> dict[str, Any] | None:
    """The recorded stack, or None if there is none."""
    path = state_dir / STACK_FILENAME
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise StackFileError(f"cannot read {path}: {error}") from error
    if not isinstance(record, dict) or record.get("version") != STACK_FILE_VERSION:
        raise StackFileError(f"{path} is not a stack file this version of likeness understands")
    return record


def _quote(value: str) -> str:
    if value and all(char.isalnum() or char in "-_./:@+=," for char in value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


def write_dev_env(state_dir: Path, env: Mapping[str, str]) -> Path:
    """KEY=value lines, loadable with `set -a; . .likeness/dev.env` or any dotenv reader."""
    path = state_dir / DEV_ENV_FILENAME
    lines = ["# Written by `likeness dev up`; removed by `likeness dev down`. Holds secrets: do not share."]
    lines += [f"{key}={_quote(value)}" for key, value in sorted(env.items())]
    write_private(path, "\n".join(lines) + "\n")
    return path


def secrets_dir_of(state_dir: Path) -> Path:
    return state_dir / SECRETS_DIRNAME


def remove_stack_files(state_dir: Path) -> None:
    for name in (STACK_FILENAME, DEV_ENV_FILENAME):
        (state_dir / name).unlink(missing_ok=True)
    shutil.rmtree(secrets_dir_of(state_dir), ignore_errors=True)


__all__ = [
    "DEV_ENV_FILENAME",
    "StackFileError",
    "find_project_dir",
    "read_dev_env",
    "read_stack_file",
    "remove_stack_files",
    "secrets_dir_of",
    "state_dir_of",
    "write_dev_env",
    "write_private",
    "write_stack_file",
]
