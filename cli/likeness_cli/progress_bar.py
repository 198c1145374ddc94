"""A progress bar on standard error: one line redrawn in place on a terminal, a line per change elsewhere."""

from __future__ import annotations

import sys
from typing import TextIO


class ProgressBar:
    """One line redrawn in place on a terminal; a line per change elsewhere (logs, CI)."""

    def __init__(self, out: TextIO | None = None, width: int = 30) -> None:
        # Looked up at call time, not bound as a default: sys.stderr may have been replaced since import.
        self.out: TextIO = out if out is not None else sys.stderr
        self.width = width
        self.live = self.out.isatty()
        self._last = ""

    def show(self, done: int, total: int, label: str) -> None:
        filled = int(self.width * done / total) if total > 0 else 0
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {label}"
        if line == self._last:
            return
        self._last = line
        if self.live:
            self.out.write("\r" + line[:200].ljust(len(line)) + "\x1b[K")
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.live and self._last:
            self.out.write("\n")
            self.out.flush()
