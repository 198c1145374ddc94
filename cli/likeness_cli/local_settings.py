"""Settings a local dev stack leaves for the command line: `<project>/.likeness/dev.env`.

`likeness dev up` (the dev kit) writes the gateway URL, a dev token and the stack's secrets there, as
KEY=value lines. The API and receipt commands read it as their last resort after flags and the
environment, so that on a laptop `likeness subjects create` works right after `likeness dev up`.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIRNAME = ".likeness"
DEV_ENV_FILENAME = "dev.env"


def find_project_dir(start: Path | None = None) -> Path:
    """The git work tree containing `start` (default: the current directory), else `start` itself."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here


def state_dir_of(project_dir: Path) -> Path:
    return project_dir / STATE_DIRNAME


def local_environment(project_dir: Path | None) -> dict[str, str]:
    """LIKENESS_* settings: the dev stack's dev.env of `project_dir` (default: the project around the
    current directory), overridden by the environment."""
    project = project_dir.resolve() if project_dir else find_project_dir()
    return read_dev_env(state_dir_of(project)) | {
        k: v for k, v in os.environ.items() if k.startswith("LIKENESS_")
    }


def read_dev_env(state_dir: Path) -> dict[str, str]:
    """The variables in dev.env (empty if there is none)."""
    path = state_dir / DEV_ENV_FILENAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1].replace("'\\''", "'")
        env[key.strip()] = value
    return env
