"""A submitted render's priority (no server)."""

from __future__ import annotations

from likeness.v1 import renderer_pb2
from renderer.priorities import queue_token, resolve_priority


def test_unspecified_is_bulk_in_a_team_look_and_interactive_otherwise() -> None:
    unspecified = renderer_pb2.RENDER_PRIORITY_UNSPECIFIED
    assert resolve_priority(unspecified, "sales-2026") == renderer_pb2.RENDER_PRIORITY_BULK
    assert resolve_priority(unspecified, "") == renderer_pb2.RENDER_PRIORITY_INTERACTIVE


def test_an_asked_priority_is_kept_and_an_unknown_one_refused() -> None:
    interactive = renderer_pb2.RENDER_PRIORITY_INTERACTIVE
    assert resolve_priority(interactive, "sales-2026") == interactive, "a team look may ask for interactive"
    assert resolve_priority(renderer_pb2.RENDER_PRIORITY_BULK, "") == renderer_pb2.RENDER_PRIORITY_BULK
    assert resolve_priority(7, "") is None  # type: ignore[arg-type]


def test_queue_tokens_and_records_from_before_priorities() -> None:
    assert queue_token(renderer_pb2.RENDER_PRIORITY_BULK) == "bulk"
    assert queue_token(renderer_pb2.RENDER_PRIORITY_INTERACTIVE) == "interactive"
    assert queue_token(renderer_pb2.RENDER_PRIORITY_UNSPECIFIED) == "interactive"
