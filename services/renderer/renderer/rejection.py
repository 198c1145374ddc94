"""A person rejects one delivered image: it is deleted for good and leaves its render.

The renderer owns the render's record, not the right to remove object versions (retention alone holds
it): the gateway first asks here whether the image is there to reject (`image_to_reject`), has retention
remove every version of the image's object (`PurgeItem`: an old version is as much the person's likeness
as the current one), then confirms here (`settle_rejection`): the image leaves the record and the render
counts it as rejected. Each step is idempotent, so a retry of the whole rejection is safe. This is not a
crypto-erase: the person's key still opens a restored backup of the image until the key is destroyed or
the backup expires.
"""

from __future__ import annotations

from likeness import ids
from likeness.jobs import JobRecords
from likeness.v1 import renderer_pb2


class ImageNotFound(LookupError):
    """The render has no such image (never had, or it was already rejected)."""


def image_to_reject(render: renderer_pb2.Render, image_id: str) -> renderer_pb2.RenderedImage:
    """The image, if the render holds it. `render` must be verified."""
    found = next((image for image in render.images if image.id == image_id), None)
    if found is None or not ids.is_valid_id(image_id, "img"):
        raise ImageNotFound(image_id)
    return found


async def settle_rejection(
    records: JobRecords[renderer_pb2.Render], render: renderer_pb2.Render, image_id: str
) -> renderer_pb2.Render:
    """The image leaves the render's record (its objects already purged); returns the render without it."""

    def drop(record: renderer_pb2.Render) -> bool:
        kept = [image for image in record.images if image.id != image_id]
        if len(kept) == len(record.images):
            return False
        del record.images[:]
        record.images.extend(kept)
        record.quality.rejected += 1
        return True

    found = await records.mutate(render.tenant, render.id, drop)
    if found is None:
        raise ImageNotFound(image_id)  # the subject was erased meanwhile
    return found
