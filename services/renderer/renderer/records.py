"""The `renders` KV bucket, owned by the renderer (both roles)."""

from __future__ import annotations

from likeness.bus import Bus
from likeness.jobs import JobRecords
from likeness.v1 import renderer_pb2

RENDERS_BUCKET = "renders"


async def open_renders(bus: Bus) -> JobRecords[renderer_pb2.Render]:
    return JobRecords(await bus.kv(RENDERS_BUCKET), renderer_pb2.Render)
