"""multipart/form-data parsed as it arrives, into events, with nothing buffered beyond the chunk at hand.

Starlette's form parsing (`UploadFile`, `request.form()`) spools files over 1 MB to a temporary file on
disk, which a plaintext photo must never touch. This wraps python-multipart's streaming parser instead:
its callbacks are synchronous, so they only record events that the async side then acts on.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

#: The form field that carries photos; other fields are skipped.
FILE_FIELD = "file"
MAX_HEADERS_PER_PART = 8
MAX_HEADER_BYTES = 4096


@dataclass(frozen=True)
class FileStarted:
    filename: str | None
    content_type: str


@dataclass(frozen=True)
class FileData:
    data: bytes


@dataclass(frozen=True)
class FileEnded:
    pass


Event = FileStarted | FileData | FileEnded


def form_boundary(content_type: str | None) -> bytes | None:
    """The boundary of a multipart/form-data body, or None when the body is not one."""
    media_type, options = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        return None
    return options.get(b"boundary") or b""


def _clean_filename(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    # Clients send UTF-8 names in the quoted string; keep only the last path segment of a full path.
    name = raw.decode("utf-8", errors="replace").replace("\\", "/")
    return posixpath.basename(name)[:255] or None


class MultipartEvents:
    """Feed body chunks in, take file events out. Raises python-multipart's parse errors on a bad body."""

    def __init__(self, boundary: bytes) -> None:
        self.finished = False
        self._events: list[Event] = []
        self._headers: dict[str, bytes] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._in_file = False
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }
        self._parser = MultipartParser(
            boundary, callbacks, max_header_count=MAX_HEADERS_PER_PART, max_header_size=MAX_HEADER_BYTES
        )

    def feed(self, chunk: bytes) -> list[Event]:
        self._parser.write(chunk)
        events, self._events = self._events, []
        return events

    def _on_part_begin(self) -> None:
        self._headers = {}
        self._in_file = False

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = bytes(self._value).strip()
        self._field.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        _, disposition = parse_options_header(self._headers.get("content-disposition"))
        if disposition.get(b"name") != FILE_FIELD.encode():
            return
        self._in_file = True
        media_type, _ = parse_options_header(self._headers.get("content-type"))
        self._events.append(
            FileStarted(
                filename=_clean_filename(disposition.get(b"filename")),
                content_type=media_type.decode("latin-1") or "application/octet-stream",
            )
        )

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file and end > start:
            self._events.append(FileData(data[start:end]))

    def _on_part_end(self) -> None:
        if self._in_file:
            self._events.append(FileEnded())
        self._in_file = False

    def _on_end(self) -> None:
        self.finished = True
