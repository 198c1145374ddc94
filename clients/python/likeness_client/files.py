"""Files a download writes: complete or not there at all."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import IO

from likeness_client.calls import IMAGE_SUFFIXES


def image_file_name(image_id: str, content_type: str) -> str:
    # The id comes from the gateway; keep only what is safe in a file name.
    safe = "".join(char for char in image_id if char.isalnum() or char in "_-") or "image"
    return safe + IMAGE_SUFFIXES.get(content_type.split(";")[0].strip(), ".bin")


class AtomicFile:
    """Writes to `<path>.part`, renamed to `path` on success, removed on failure."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".part")
        self._file: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        self._file = self.partial.open("wb")
        return self._file

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self._file is not None
        self._file.close()
        if kind is None:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)
