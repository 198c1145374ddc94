"""A zip archive written as a stream: every call returns the bytes ready to send, nothing is kept.

`zipfile` writes to a sink that cannot seek (it has no `tell`), so each entry is followed by a data
descriptor instead of having its header patched afterwards: the archive never exists as a whole, on disk
or in memory, and what is held at any moment is the piece being written (plus the deflate window).
The central directory is written only by `finish()`: a stream cut before it is not a readable archive,
so a client can never mistake an export that failed half-way for a complete one.
"""

from __future__ import annotations

import json
import time
import zipfile
from typing import IO, Any

#: Images are already compressed; deflating them again costs CPU for nothing.
STORED_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class _Sink:
    """A write-only, unseekable file: collects what zipfile writes until it is taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class ZipStream:
    """Entries are written one after the other; each method returns the archive's next bytes."""

    def __init__(self) -> None:
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(self._sink, mode="w", compression=zipfile.ZIP_DEFLATED)
        self._entry: IO[bytes] | None = None
        self.names: list[str] = []
        self.finished = False

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
        stored = name.lower().endswith(STORED_SUFFIXES)
        info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        info.external_attr = 0o600 << 16  # a regular file, readable by its owner only once unpacked
        return info

    def add(self, name: str, data: bytes) -> bytes:
        """A whole small entry (a record, the README)."""
        return self.begin(name) + self.write(data) + self.end()

    def add_json(self, name: str, value: Any) -> bytes:
        return self.add(name, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode())

    def begin(self, name: str) -> bytes:
        """Starts an entry whose content comes in pieces (`write`), until `end`."""
        if self._entry is not None:
            raise RuntimeError("the previous entry is still open")
        self._entry = self._zip.open(self._info(name), mode="w")
        self.names.append(name)
        return self._sink.take()

    def write(self, data: bytes) -> bytes:
        if self._entry is None:
            raise RuntimeError("no entry is open")
        self._entry.write(data)
        return self._sink.take()

    def end(self) -> bytes:
        if self._entry is None:
            raise RuntimeError("no entry is open")
        self._entry.close()
        self._entry = None
        return self._sink.take()

    def finish(self) -> bytes:
        """The central directory: after this the archive is complete and readable."""
        if self._entry is not None:
            raise RuntimeError("an entry is still open")
        self._zip.close()
        self.finished = True
        return self._sink.take()

    def discard(self) -> None:
        """Drops an archive that will not be finished (a failed export): what it would still write is
        thrown away, so the bytes already sent never become a readable archive."""
        if self.finished:
            return
        if self._entry is not None:
            self._entry.close()
            self._entry = None
        self._zip.close()
        self._sink.take()
        self.finished = True
