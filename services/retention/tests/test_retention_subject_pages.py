"""`ListSubjects` pages from the server (issue 18, item 6): newest first, page tokens that are the last id
of the previous page, erased subjects left out (also one erased between two pages), other tenants never
seen, and a page that reads only its own records whatever the tenant's size. Real NATS, S3 and OpenBao."""

from __future__ import annotations

from typing import Any

from likeness.bus import kv_keys
from likeness.method_access import acting_as
from likeness.user_tokens import Principal
from likeness.v1 import retention_pb2
from likeness_dev.tokens import ALL_SCOPES
from retention.records import RetentionRecords
from retention.service import RetentionServicer


async def _page(
    servicer: RetentionServicer, tenant: str, size: int, token: str
) -> retention_pb2.ListSubjectsResponse:
    request = retention_pb2.ListSubjectsRequest(tenant=tenant, page_size=size, page_token=token)
    with acting_as(Principal(tenant=tenant, scopes=frozenset(ALL_SCOPES))):
        return await servicer.ListSubjects(request, None)  # type: ignore[arg-type]


async def _every_page(servicer: RetentionServicer, tenant: str, size: int) -> list[list[str]]:
    pages, token = [], ""
    while True:
        page = await _page(servicer, tenant, size, token)
        pages.append([subject.id for subject in page.subjects])
        token = page.next_page_token
        if not token:
            return pages
        assert token == page.subjects[-1].id, "a page token is the last id of its page"


async def test_pages_run_newest_first_over_the_tenants_own_subjects(instances: Any) -> None:
    servicer = await instances.new()
    tenant, other = instances.tenant, f"{instances.tenant}-b"
    mine = []
    for _ in range(7):
        mine.append((await instances.open_subject(servicer, tenant)).id)
        await instances.open_subject(servicer, other)
    pages = await _every_page(servicer, tenant, 3)
    assert pages == [mine[6:3:-1], mine[3:0:-1], mine[:1]]
    assert [s for page in await _every_page(servicer, other, 100) for s in page] != []
    assert await _every_page(servicer, "nobody", 3) == [[]]


async def test_erased_subjects_are_left_out_even_between_two_pages(instances: Any) -> None:
    servicer = await instances.new()
    tenant = instances.tenant
    mine = [(await instances.open_subject(servicer, tenant)).id for _ in range(6)]
    first = await _page(servicer, tenant, 2, "")
    assert [s.id for s in first.subjects] == [mine[5], mine[4]]
    # The subject the token names and one on the next page are erased before the next page is asked for.
    for gone in (mine[4], mine[2]):
        requested = await servicer.eraser.request(tenant, gone, "request")
        assert requested.erasure is not None
        await instances.wait_erased(servicer, tenant, requested.erasure.id)
    rest = await _page(servicer, tenant, 10, first.next_page_token)
    assert [s.id for s in rest.subjects] == [mine[3], mine[1], mine[0]]
    assert rest.next_page_token == ""
    assert [s for page in await _every_page(servicer, tenant, 2) for s in page] == [
        mine[5],
        mine[3],
        mine[1],
        mine[0],
    ]


async def test_a_page_reads_only_its_own_records(instances: Any, monkeypatch: Any) -> None:
    """The cost of a page does not follow the tenant's size: 60 subjects, a page of 5 reads 6 records
    (one more tells whether a page follows), never the other 54."""
    servicer = await instances.new()
    tenant = instances.tenant
    for _ in range(60):
        await instances.open_subject(servicer, tenant)
    reads: list[str] = []
    real_get = RetentionRecords.get_subject

    async def counted(self: RetentionRecords, tenant_: str, subject_id: str) -> Any:
        reads.append(subject_id)
        return await real_get(self, tenant_, subject_id)

    monkeypatch.setattr(RetentionRecords, "get_subject", counted)
    page = await _page(servicer, tenant, 5, "")
    assert len(page.subjects) == 5
    assert page.next_page_token
    assert len(reads) == 6
    reads.clear()
    await _page(servicer, tenant, 5, page.next_page_token)
    assert len(reads) == 6


async def test_subjects_opened_before_the_order_existed_are_ordered_at_start(instances: Any) -> None:
    """An upgrade: subject records without order entries are ordered (by id) on the first start."""
    servicer = await instances.new()
    tenant = instances.tenant
    mine = [(await instances.open_subject(servicer, tenant)).id for _ in range(4)]
    order = servicer.records.subject_order
    for subject_id in mine:
        await order.forget(tenant, subject_id)
    assert await _every_page(servicer, tenant, 10) == [[]]
    assert await servicer.records.order_existing_subjects() == 4
    assert await servicer.records.order_existing_subjects() == 0, "only an empty order is filled"
    assert await _every_page(servicer, tenant, 3) == [mine[:0:-1], mine[:1]]
    assert sorted(await kv_keys(order.kv, "")) == sorted(f"{tenant}.{s}" for s in mine)
