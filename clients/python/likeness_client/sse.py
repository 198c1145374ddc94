"""Server-Sent Events, parsed line by line (the WHATWG rules): `event:`, `data:` (several are joined
with newlines), `id:`, `retry:`; lines starting with `:` are comments (the gateway's heartbeats); a blank
line dispatches the event. No I/O here: the sync and async clients feed it the lines they read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._retry: int | None = None
        #: The last event id seen (kept across events, as the spec says), for `Last-Event-ID` on reconnect.
        self.last_event_id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        """One line without its ending; returns the event a blank line completes, if any."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data and not self._event:
            self._retry = None
            return None
        event = ServerSentEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self.last_event_id,
            retry=self._retry,
        )
        self._event, self._data, self._retry = "", [], None
        return event
