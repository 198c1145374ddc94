"""A subject's photos from ingest, page after page: ingest pages `ListPhotos` itself (issue 18), so a
subject with thousands of rejected verdicts never outgrows one gRPC message; callers that need every
photo (a training's or render's checks, the data export) follow the pages to the end."""

from __future__ import annotations

from gateway.backends import Backends
from gateway.paging import every_page
from likeness.v1 import ingest_pb2

#: Ingest's largest page (`likeness.record_pages.MAX_PAGE_SIZE`): the fewest calls for a whole listing.
PHOTO_PAGE_SIZE = 100


async def photo_page(
    backends: Backends, tenant: str, subject_id: str, size: int, after_photo_id: str = ""
) -> ingest_pb2.ListPhotosResponse:
    request = ingest_pb2.ListPhotosRequest(
        tenant=tenant, subject_id=subject_id, page_size=size, page_token=after_photo_id
    )
    return await backends.ingest.ListPhotos(request, timeout=backends.timeout)


async def every_photo(backends: Backends, tenant: str, subject_id: str) -> list[ingest_pb2.Photo]:
    """All the subject's photos, oldest first, each exactly once."""

    async def fetch(token: str) -> tuple[list[ingest_pb2.Photo], str]:
        page = await photo_page(backends, tenant, subject_id, PHOTO_PAGE_SIZE, token)
        return list(page.photos), page.next_page_token

    return await every_page(fetch)
