"""Records do not name key material for retention to trust: an erasure or deadline record that names
another subject than its own key (written into retention's buckets by anyone but retention's code) destroys
no key, deletes no object and gets no receipt signed. Real NATS, S3 and OpenBao."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from likeness import ids
from likeness.timeutil import ManualClock, to_timestamp
from likeness.v1 import retention_pb2
from likeness.vault_transit import key_name
from retention.deadlines import Deadline, DeadlineKind, deadline_key

ES = retention_pb2.ErasureStatus


async def test_a_forged_erasure_record_destroys_no_key_after_a_restart(instances: Any) -> None:
    servicer = await instances.new()
    victim_tenant, attacker_tenant = instances.tenant, f"{instances.tenant}x"
    victim = (await instances.open_subject(servicer, victim_tenant)).id
    kept = await instances.put_object(servicer, victim_tenant, victim, f"photos/{ids.new_id('pho')}", b"crop")
    forged = retention_pb2.Erasure(
        id=ids.new_id("era"),
        tenant=attacker_tenant,
        key_name=key_name(victim),
        status=ES.ERASURE_STATUS_PENDING,
        requested_at=to_timestamp(servicer.clock.now()),
    )
    await servicer.records.put_erasure(forged)
    # ... and the same, in the victim's own tenant, for a subject whose record names no such erasure.
    await servicer.records.put_erasure(
        retention_pb2.Erasure(
            id=ids.new_id("era"),
            tenant=victim_tenant,
            key_name=key_name(victim),
            status=ES.ERASURE_STATUS_PENDING,
        )
    )

    await servicer.resume_unfinished_erasures()  # what a restarted replica does first
    await servicer.eraser.wait_all()
    assert await asyncio.to_thread(servicer.platform.keys.exists, victim), "the victim's key is intact"
    assert await instances.keys_under(servicer, victim_tenant, victim) == {kept}
    assert await servicer.receipt(attacker_tenant, forged.id) is None, "no receipt for a forged erasure"
    assert await servicer.visible_erasure(attacker_tenant, forged.id) is None

    # A real erasure of the same subject still runs: the check is not a refusal of everything.
    erasure = (await servicer.eraser.request(victim_tenant, victim, "request")).erasure
    assert erasure is not None
    await instances.wait_erased(servicer, victim_tenant, erasure.id)
    assert not await asyncio.to_thread(servicer.platform.keys.exists, victim)
    assert await servicer.receipt(victim_tenant, erasure.id) is not None


async def test_a_forged_deadline_record_deletes_nothing_of_another_subject(instances: Any) -> None:
    clock = ManualClock()
    servicer = await instances.new(clock)
    tenant = instances.tenant
    victim = (await instances.open_subject(servicer, tenant)).id
    own = (await instances.open_subject(servicer, tenant)).id
    kept = await instances.put_object(servicer, tenant, victim, f"photos/{ids.new_id('pho')}", b"crop")
    # Under a key of `own`'s, a record whose fields name the victim's whole prefix.
    key = deadline_key(tenant, own, DeadlineKind.PHOTO, ids.new_id("pho"))
    aimed = Deadline(tenant, victim, DeadlineKind.RESCAN, ids.new_id("era"), due=clock.now())
    await servicer.records.deadlines.put(key, aimed.to_json())

    clock.advance(timedelta(seconds=1))
    assert await servicer.reaper.execute(key) is False
    assert await servicer.reaper.fire_due() == []
    assert await instances.keys_under(servicer, tenant, victim) == {kept}, "nothing of the victim deleted"

    # A real deadline of the victim's photo is still carried out.
    photo = ids.new_id("pho")
    doomed = await instances.put_object(servicer, tenant, victim, f"photos/{photo}", b"crop")
    await servicer.reaper.deadlines.schedule(
        Deadline(tenant, victim, DeadlineKind.PHOTO, photo, due=clock.now())
    )
    assert len(await servicer.reaper.fire_due()) == 1
    assert await instances.keys_under(servicer, tenant, victim) == {kept}
    assert doomed not in await instances.keys_under(servicer, tenant, victim)
