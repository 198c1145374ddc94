"""A person rejects one delivered image: it is deleted for good and leaves its render.

Every version of the image's object goes (the bucket is versioned, and an old version is as much the
person's likeness as the current one), then the image leaves the render's record and the render counts
it as rejected. Deleting first makes a retry safe: a second call finds nothing left to delete and only
settles the record. This is not a crypto-erase: the person's key still opens a restored backup of the
image until the key is destroyed or the backup expires.
"""

from __future__ import annotations

import asyncio

from likeness.jobs import JobRecords
from likeness.object_names import render_image_key
from likeness.store import ObjectStore
from likeness.v1 import renderer_pb2


class ImageNotFound(LookupError):
    """The render has no such image (never had, or it was already rejected)."""


async def reject_image(
    store: ObjectStore,
    records: JobRecords[renderer_pb2.Render],
    render: renderer_pb2.Render,
    image_id: str,
) -> renderer_pb2.Render:
    """Deletes the image (all versions) and returns the render without it. `render` must be verified."""
    if not any(image.id == image_id for image in render.images):
        raise ImageNotFound(image_id)
    key = render_image_key(render.tenant, render.subject_id, render.id, image_id)
    # As a prefix this names the one object: image ids have a fixed length, so none prefixes another.
    await asyncio.to_thread(store.delete_all_versions, key)

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
    # Audit hook (issue 16, item 2): the service holding the data writes one `image.rejected` record here,
    # with the caller's principal and the person's keyed HMAC; left to the audit work.
    return found
