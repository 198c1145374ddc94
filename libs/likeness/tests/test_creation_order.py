"""Ids in creation order, paged newest first from a real NATS KV bucket (`likeness.creation_order`): order,
scopes kept apart, windows across other scopes' ids, tokens whose id was forgotten, nothing left behind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from likeness.bus import Bus, kv_keys
from likeness.config import CommonSettings
from likeness.creation_order import FIRST_WINDOW, CreationOrder
from likeness.ids import new_id
from likeness.provisioning import BucketSpec
from likeness_dev.testing import provision_for_test


@pytest.fixture
async def order(settings: CommonSettings) -> AsyncIterator[CreationOrder]:
    bus = await Bus.connect(settings.nats_url, "creation-order-test")
    name = f"order-{uuid.uuid4().hex[:8]}"
    await provision_for_test(bus.js, [BucketSpec(name, allow_direct=True)])
    yield CreationOrder(await bus.kv(name))
    await bus.js.delete_key_value(name)
    await bus.close()


async def _all(order: CreationOrder, scope: str, before: str = "") -> list[str]:
    return [item for batch in [b async for b in order.newest_first(scope, before)] for item in batch]


async def _page(order: CreationOrder, scope: str, size: int, before: str) -> list[str]:
    page: list[str] = []
    async for batch in order.newest_first(scope, before):
        page += batch[: size - len(page)]
        if len(page) == size:
            break
    return page


async def test_an_empty_index_lists_nothing(order: CreationOrder) -> None:
    assert await order.is_empty()
    assert await _all(order, "acme") == []
    assert await _all(order, "acme", new_id("sub")) == []


async def test_ids_come_newest_first_and_only_the_scopes_own(order: CreationOrder) -> None:
    mine, theirs = [], []
    for _ in range(30):
        mine.append(new_id("sub"))
        await order.add("acme", mine[-1])
        theirs.append(new_id("sub"))
        await order.add("globex", theirs[-1])
    assert not await order.is_empty()
    assert await _all(order, "acme") == mine[::-1]
    assert await _all(order, "globex") == theirs[::-1]
    assert await _all(order, "initech") == []


async def test_an_id_added_twice_keeps_its_first_place(order: CreationOrder) -> None:
    first, second = new_id("sub"), new_id("sub")
    await order.add("acme", first)
    await order.add("acme", second)
    await order.add("acme", first)
    assert await _all(order, "acme") == [second, first]


@pytest.mark.parametrize("stride", [1, 7, 20], ids=["dense", "one-in-seven", "one-in-twenty"])
async def test_pages_follow_each_other_without_gaps_or_repeats(order: CreationOrder, stride: int) -> None:
    """Pages walk back over windows of the stream; where other scopes' ids fill most of it, windows grow
    until a page is full: read whole (one in seven), or filtered by the server once the scope is sparse
    (one in twenty)."""
    mine = []
    for index in range(3 * FIRST_WINDOW * stride):
        item = new_id("sub")
        if index % stride == 0:
            mine.append(item)
            await order.add("acme", item)
        else:
            await order.add("other", item)
    seen: list[str] = []
    before = ""
    while True:
        page = await _page(order, "acme", 50, before)
        seen += page
        if len(page) < 50:
            break
        before = page[-1]
    assert seen == mine[::-1]


async def test_a_page_after_a_forgotten_id_starts_where_it_was(order: CreationOrder) -> None:
    """A token whose id was erased between two pages: found by binary search, nothing skipped or
    repeated; an id never added (made before or after all of them) lists all older or none."""
    older_than_all = new_id("sub")
    mine = []
    for _ in range(40):
        mine.append(new_id("sub"))
        await order.add("acme", mine[-1])
        await order.add("other", new_id("sub"))
    newer_than_all = new_id("sub")
    gone = mine[20]
    await order.forget("acme", gone)
    assert await _all(order, "acme", gone) == mine[:20][::-1]
    assert gone not in await _all(order, "acme")
    assert await _all(order, "acme", older_than_all) == []
    assert await _all(order, "acme", newer_than_all) == [m for m in mine if m != gone][::-1]


async def test_forgetting_leaves_no_key_naming_the_id(order: CreationOrder) -> None:
    kept, gone = new_id("sub"), new_id("sub")
    await order.add("acme", kept)
    await order.add("acme", gone)
    await order.forget("acme", gone)
    assert await kv_keys(order.kv, "") == [f"acme.{kept}"]
    assert await _all(order, "acme") == [kept]
