"""Quota admission on the real NATS (`likeness.quotas`): a tenant's concurrent submits, through two serve
replicas at once, never queue more jobs than its concurrency limit, and the refused ones leave no record.

Each replica is a `TenantQuotas` on its own connection, submitting as the services do: check the quotas,
write the record (here: remember it), publish the job under the check's fence. A fresh tenant per test on
the real render stream (no consumer of it exists, so nothing takes the jobs); its messages are purged after.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from likeness.bus import Bus, job_nats_subject, stream_subject_counts
from likeness.config import CommonSettings
from likeness.provisioning import RENDER_STREAM
from likeness.quota_policy import CONCURRENT_RENDERS, QUOTA_METADATA_KEY, QuotaSettings, Refusal
from likeness.quotas import Fence, TenantQuotas
from likeness.v1 import jobs_pb2

LIMIT = 3
SUBMITS = 12


class Refused(Exception):
    def __init__(self, quota: str | None) -> None:
        super().__init__(quota)
        self.quota = quota


class CallContext:
    """What `likeness.rpc_errors.abort` uses of a gRPC call's context."""

    def __init__(self) -> None:
        self.metadata: dict[str, str] = {}

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.metadata = dict(metadata)

    async def abort(self, status: grpc.StatusCode, message: str) -> None:
        raise Refused(self.metadata.get(QUOTA_METADATA_KEY))


@pytest.fixture
async def replicas(settings: CommonSettings) -> AsyncIterator[tuple[TenantQuotas, TenantQuotas]]:
    limits = QuotaSettings(quota_concurrent_renders=LIMIT)
    buses = [await Bus.connect(settings.nats_url, f"quota-test-{n}") for n in range(2)]
    yield TenantQuotas(buses[0], limits, "render"), TenantQuotas(buses[1], limits, "render")
    for bus in buses:
        await bus.close()


@pytest.fixture
async def tenant(replicas: tuple[TenantQuotas, TenantQuotas]) -> AsyncIterator[str]:
    name = f"q{uuid.uuid4().hex[:10]}"
    yield name
    await replicas[0].bus.js.purge_stream(RENDER_STREAM, subject=f"job.render.{name}.>")


async def _queued(quotas: TenantQuotas, tenant: str) -> int:
    return sum((await stream_subject_counts(quotas.bus.js, RENDER_STREAM, f"job.render.{tenant}.>")).values())


async def _submit(
    quotas: TenantQuotas,
    tenant: str,
    records: set[str],
    fenced: bool = True,
    publishes: list[str] | None = None,
) -> str | None:
    """One submit as `SubmitRender` makes it, without the replica's turns (`_submit_in_turn`): the quota's
    name if refused, else None. Each try to publish is added to `publishes`."""
    context: Any = CallContext()
    job_id = f"ren_{uuid.uuid4().hex[:26]}"
    judge: Callable[[], Awaitable[tuple[Refusal | None, Fence]]] = lambda: quotas.render_refusal(tenant)  # noqa: E731
    nats_subject = job_nats_subject("render", tenant, f"sub_{uuid.uuid4().hex[:26]}", "interactive")
    job = jobs_pb2.RenderJob(render_id=job_id, tenant=tenant)

    async def publish(under: Fence) -> None:
        expect = under.headers() if fenced else None
        if publishes is not None:
            publishes.append(job_id)
        await quotas.bus.publish(nats_subject, job, msg_id=job_id, expect=expect)

    async def withdraw() -> None:
        records.discard(job_id)

    try:
        fence = await quotas.check(context, tenant, judge)
        records.add(job_id)
        await asyncio.sleep(0.01)  # the record's write: the window in which other submits pass their checks
        await quotas.publish_admitted(context, tenant, fence, publish, judge, withdraw)
    except Refused as refused:
        return refused.quota
    return None


async def _submit_in_turn(
    quotas: TenantQuotas, tenant: str, records: set[str], publishes: list[str]
) -> str | None:
    """A submit as `SubmitRender` makes it: from its check to its publish, in its turn in the replica."""
    async with quotas.admitting(tenant):
        return await _submit(quotas, tenant, records, publishes=publishes)


async def test_racing_submits_through_two_replicas_queue_no_more_than_the_limit(
    replicas: tuple[TenantQuotas, TenantQuotas], tenant: str
) -> None:
    records: set[str] = set()
    outcomes = await asyncio.gather(*(_submit(replicas[n % 2], tenant, records) for n in range(SUBMITS)))
    assert outcomes.count(None) == LIMIT, outcomes
    assert set(outcomes) == {None, CONCURRENT_RENDERS}, "every refusal names the quota"
    assert await _queued(replicas[0], tenant) == LIMIT, "the stream holds exactly the admitted jobs"
    assert len(records) == LIMIT, "a submit refused after writing its record withdrew it"


async def test_without_the_fence_the_same_race_queues_past_the_limit(
    replicas: tuple[TenantQuotas, TenantQuotas], tenant: str
) -> None:
    """The race the fence closes is real: checks alone, then publishes, admit every submit."""
    records: set[str] = set()
    outcomes = await asyncio.gather(
        *(_submit(replicas[n % 2], tenant, records, fenced=False) for n in range(SUBMITS))
    )
    assert outcomes.count(None) > LIMIT
    assert await _queued(replicas[0], tenant) > LIMIT


async def test_a_job_that_ends_frees_its_place_for_the_next_submit(
    replicas: tuple[TenantQuotas, TenantQuotas], tenant: str
) -> None:
    records: set[str] = set()
    assert [await _submit(replicas[0], tenant, records) for _ in range(LIMIT + 1)] == [None] * LIMIT + [
        CONCURRENT_RENDERS
    ]
    # A worker finishes the newest job (a work queue then drops its message): the fence moves, a place frees.
    newest = await replicas[0].bus.js.get_last_msg(RENDER_STREAM, f"job.render.{tenant}.>")
    await replicas[0].bus.js.delete_msg(RENDER_STREAM, int(newest.seq or 0))
    assert await _submit(replicas[1], tenant, records) is None
    assert await _queued(replicas[0], tenant) == LIMIT


async def test_a_replicas_submits_of_one_tenant_take_turns_and_none_publishes_in_vain(
    replicas: tuple[TenantQuotas, TenantQuotas], tenant: str
) -> None:
    """A burst to one replica queues for its turn instead of racing for the fence: the submits past the
    limit are refused at their check, before writing a record, and no publish is retried."""
    records: set[str] = set()
    publishes: list[str] = []
    outcomes = await asyncio.gather(
        *(_submit_in_turn(replicas[0], tenant, records, publishes) for _ in range(SUBMITS))
    )
    assert outcomes.count(None) == LIMIT, outcomes
    assert len(publishes) == LIMIT, "each admitted job published once, the refused ones never"
    assert await _queued(replicas[0], tenant) == LIMIT
