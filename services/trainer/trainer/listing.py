"""A subject's trainings a page at a time, newest first (ids sort by creation time).

Records are keyed `<tenant>.<training>`, so one server-side watch over the tenant's keys reads them (no
per-key round trip); the page token is the last id of the previous page.
"""

from __future__ import annotations

from nats.js.kv import KeyValue

from likeness import ids
from likeness.v1 import trainer_pb2

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


class InvalidPage(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def page_size(requested: int) -> int:
    size = requested or DEFAULT_PAGE_SIZE
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidPage("invalid_page_size", f"page_size must be 1..{MAX_PAGE_SIZE}.")
    return size


async def tenant_trainings(kv: KeyValue, tenant: str) -> list[trainer_pb2.Training]:
    watcher = await kv.watch(f"{tenant}.>", ignore_deletes=True)
    found: list[trainer_pb2.Training] = []
    try:
        async for entry in watcher:
            if entry is None:
                break
            if entry.value:
                training = trainer_pb2.Training()
                training.ParseFromString(entry.value)
                found.append(training)
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return found


async def subject_trainings_page(
    kv: KeyValue, request: trainer_pb2.ListTrainingsRequest
) -> trainer_pb2.ListTrainingsResponse:
    size = page_size(request.page_size)
    if request.page_token and not ids.is_valid_id(request.page_token, "trn"):
        raise InvalidPage("invalid_page_token", "The page token is not valid.")
    if not ids.is_valid_tenant(request.tenant) or not ids.is_valid_id(request.subject_id, "sub"):
        return trainer_pb2.ListTrainingsResponse()
    mine = sorted(
        (t for t in await tenant_trainings(kv, request.tenant) if t.subject_id == request.subject_id),
        key=lambda training: training.id,
        reverse=True,
    )
    if request.page_token:
        mine = [training for training in mine if training.id < request.page_token]
    page = mine[:size]
    more = len(mine) > size
    return trainer_pb2.ListTrainingsResponse(
        trainings=page, next_page_token=page[-1].id if more and page else ""
    )
