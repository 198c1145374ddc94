"""A render's priority: which of its tenant's two queues it waits in (`likeness.tenant_queues`)."""

from __future__ import annotations

from likeness.provisioning import BULK, INTERACTIVE
from likeness.v1 import renderer_pb2

Priority = renderer_pb2.RenderPriority

#: The queue token (`job.render.<tenant>.<priority>.<subject>`) of each priority a record may hold.
QUEUE_TOKENS: dict[Priority.ValueType, str] = {
    renderer_pb2.RENDER_PRIORITY_INTERACTIVE: INTERACTIVE,
    renderer_pb2.RENDER_PRIORITY_BULK: BULK,
}


def resolve_priority(requested: Priority.ValueType, team_look_id: str) -> Priority.ValueType | None:
    """The priority a submitted render gets: the one asked for, else bulk in a team look (a run over many
    people) and interactive otherwise. None for a value this version does not know."""
    if requested == renderer_pb2.RENDER_PRIORITY_UNSPECIFIED:
        return renderer_pb2.RENDER_PRIORITY_BULK if team_look_id else renderer_pb2.RENDER_PRIORITY_INTERACTIVE
    return requested if requested in QUEUE_TOKENS else None


def queue_token(priority: Priority.ValueType) -> str:
    """The queue token of a stored render's priority (records from before priorities: interactive)."""
    return QUEUE_TOKENS.get(priority, INTERACTIVE)
