"""Orphan sweeps against the real servers: objects whose key is gone, objects past their schedule whose
event never came, and keys left without a live subject."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from likeness import ids
from likeness.timeutil import ManualClock
from likeness.v1 import retention_pb2

DAY = timedelta(days=1)


async def test_objects_whose_key_is_gone_are_deleted_and_live_ones_kept(instances: Any) -> None:
    servicer = await instances.new()
    tenant = instances.tenant
    orphaned = (await instances.open_subject(servicer, tenant)).id
    live = (await instances.open_subject(servicer, tenant)).id
    await instances.put_object(servicer, tenant, orphaned, f"photos/{ids.new_id('pho')}", b"crop")
    kept = await instances.put_object(servicer, tenant, live, f"photos/{ids.new_id('pho')}", b"crop")
    await asyncio.to_thread(servicer.platform.keys.destroy, orphaned)  # e.g. an erasure cut short

    result = await servicer.orphans.sweep_objects(tenants=[tenant])
    assert result.orphan_objects == 1
    assert await instances.keys_under(servicer, tenant, orphaned) == set()
    assert await instances.keys_under(servicer, tenant, live) == {kept}


async def test_objects_past_their_schedule_go_even_without_their_event(instances: Any) -> None:
    clock = ManualClock()
    servicer = await instances.new(clock)
    tenant = instances.tenant
    await servicer.set_policy(tenant, retention_pb2.RetentionSchedule(photos_days=1, renders_days=10))
    sid = (await instances.open_subject(servicer, tenant)).id
    photo = ids.new_id("pho")
    await instances.put_object(servicer, tenant, sid, f"photos/{photo}", b"crop")
    await instances.put_object(servicer, tenant, sid, f"faces/{photo}", b"template")
    render = await instances.put_object(servicer, tenant, sid, f"renders/{ids.new_id('ren')}/img", b"png")

    assert (await servicer.orphans.sweep_objects(tenants=[tenant])).expired_objects == 0
    clock.advance(2 * DAY)
    assert (await servicer.orphans.sweep_objects(tenants=[tenant])).expired_objects == 2
    assert await instances.keys_under(servicer, tenant, sid) == {render}


async def test_keys_without_a_live_subject_are_destroyed_after_the_grace_period(instances: Any) -> None:
    clock = ManualClock()
    servicer = await instances.new(clock, orphan_key_grace_days=1.0)
    tenant = instances.tenant
    keys = servicer.platform.keys
    stray = ids.new_id("sub")  # a subject whose opening failed after its key was made
    await asyncio.to_thread(keys.create, stray)
    live = (await instances.open_subject(servicer, tenant)).id
    ours = {stray, live}.__contains__

    assert await servicer.orphans.sweep_keys(only=ours) == 0, "young keys are left alone"
    clock.advance(2 * DAY)
    assert await servicer.orphans.sweep_keys(only=ours) == 1
    assert not await asyncio.to_thread(keys.exists, stray)
    assert await asyncio.to_thread(keys.exists, live), "a live subject's key stays"
