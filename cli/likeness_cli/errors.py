"""Exit codes and the one-line error every command (and every command plugin) reports with."""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure to report in one line (plus detail) with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def say(message: str) -> None:
    print(f"likeness: {message}", file=sys.stderr, flush=True)
