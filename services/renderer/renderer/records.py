"""The `renders` KV bucket, owned by the renderer (both roles), keyed `<tenant>.<render>`."""

from __future__ import annotations

import logging

from likeness import ids
from likeness.bus import Bus
from likeness.jobs import JobRecords
from likeness.v1 import renderer_pb2

log = logging.getLogger(__name__)

RENDERS_BUCKET = "renders"


async def open_renders(bus: Bus) -> JobRecords[renderer_pb2.Render]:
    return JobRecords(await bus.kv(RENDERS_BUCKET), renderer_pb2.Render)


async def verified_render(
    records: JobRecords[renderer_pb2.Render], tenant: str, render_id: str
) -> renderer_pb2.Render | None:
    """The render stored at `<tenant>.<render_id>`, if the record is the one its key names.

    Its images are decrypted under the key of the subject it names, so a record whose own tenant or id
    differs from its key, or whose subject is no subject id, is never used (the forged-record attack: a
    record in one tenant's keyspace naming another tenant's render, to have it decrypted).
    """
    if not ids.is_valid_tenant(tenant) or not ids.is_valid_id(render_id, "ren"):
        return None
    found = await records.get(tenant, render_id)
    if found is None:
        return None
    render = found[0]
    if (render.tenant, render.id) != (tenant, render_id) or not ids.is_valid_id(render.subject_id, "sub"):
        log.warning("a render record does not match its key; ignored")
        return None
    return render
