"""Fair scheduling across tenants (issue 18, item 2), with the dev stack's real processes and its one render
worker on the tiny models.

- While tenant A has 200 renders queued, tenant B's first render starts after at most one more of A's
  starts: the worker takes the tenants' queues round-robin (`likeness.tenant_queues`).
- Within a tenant, an interactive render starts before bulk renders queued earlier.

Who started when is read from the render records' writes, in the order the server stored them: an admin
connection subscribes to the renders bucket's NATS subjects (`$KV.renders.<tenant>.<render_id>`) and logs
each write (a record's creation when it is queued, `running` when a worker takes it). No clock is compared.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from likeness.config import CommonSettings
from likeness.provisioning import RENDER_QUEUES
from likeness.tenant_queues import list_backlogs
from likeness.v1 import common_pb2, renderer_pb2
from likeness_dev.journey import GatewayClient
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack

pytestmark = pytest.mark.slow

BACKLOG = 200
RENDER = {"instant": True, "styles": ["linkedin"], "images_per_style": 1, "seed": 7}
RUNNING = common_pb2.JOB_STATUS_RUNNING


@dataclass
class RecordLog:
    """Every write of a render record, in the server's order: (tenant, render id, status)."""

    writes: list[tuple[str, str, int]] = field(default_factory=list)

    async def on_write(self, msg: Msg) -> None:
        _, _, tenant, render_id = msg.subject.split(".", 3)
        if not msg.data:
            return  # a delete or purge marker
        record = renderer_pb2.Render()
        record.ParseFromString(msg.data)
        self.writes.append((tenant, render_id, record.status))

    def index(self, render_id: str, status: int | None = None) -> int | None:
        """Where the render's first write (with `status`, if given) is in the log."""
        for position, (_, found, written) in enumerate(self.writes):
            if found == render_id and (status is None or written == status):
                return position
        return None

    def started(self, tenant: str, start: int = 0, end: int | None = None) -> list[str]:
        """The tenant's renders whose first `running` write lies in `writes[start:end]`, in order."""
        seen: set[str] = set()
        order = []
        for position, (found_tenant, render_id, status) in enumerate(self.writes):
            if found_tenant != tenant or status != RUNNING or render_id in seen:
                continue
            seen.add(render_id)
            if position >= start and (end is None or position < end):
                order.append(render_id)
        return order


def _admin_url(stack: DevStack) -> str:
    env = stack.infra.endpoints.as_env()
    settings = CommonSettings.model_validate({k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()})
    return settings.nats_url


@pytest.fixture
async def record_log(stack: DevStack) -> AsyncIterator[RecordLog]:
    log = RecordLog()
    nc = await nats.connect(_admin_url(stack))
    await nc.subscribe("$KV.renders.>", cb=log.on_write)
    await nc.flush()
    try:
        yield log
    finally:
        await nc.close()


async def _until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:.0f}s"
        await asyncio.sleep(0.05)
    return value


def _tenant_client(stack: DevStack, prefix: str) -> tuple[str, GatewayClient]:
    tenant = f"{prefix}-{secrets.token_hex(4)}"
    return tenant, GatewayClient(stack.gateway_url, stack.mint_token(tenant=tenant))


def _subject_with_photo(gateway: GatewayClient) -> str:
    """A subject with an accepted photo and a live `instant` grant (an instant render needs no training)."""
    consent = {"purpose": "headshots", "policy_version": "1"}
    subject_id = str(gateway.json("POST", "/v1/subjects", expect=(201,), json={"consent": consent})["id"])
    gateway.json(
        "POST",
        f"/v1/subjects/{subject_id}/consents",
        expect=(201,),
        json={"purpose": "instant", "policy_version": "1"},
    )
    files = [("file", (name, data, "application/octet-stream")) for name, data in sample_photos(1)]
    uploaded = gateway.json("POST", f"/v1/subjects/{subject_id}/photos", files=files)["photos"]
    assert all(photo["status"] == "accepted" for photo in uploaded), uploaded
    return subject_id


def _submit(gateway: GatewayClient, subject_id: str, priority: str | None = None) -> str:
    """Queues one render, waiting out the caller's rate limit (429) as a client would."""
    body = RENDER | ({"priority": priority} if priority else {})
    while True:
        response = gateway.call("POST", f"/v1/subjects/{subject_id}/renders", expect=(202, 429), json=body)
        if response.status_code == 202:
            return str(response.json()["id"])
        time.sleep(float(response.headers.get("Retry-After", "1")))


def _worker_running(stack: DevStack) -> None:
    """The render worker back up, whatever happened (the stack is shared by the session's tests)."""
    if not stack.services["renderer-worker"].process.running:
        stack.start_service("renderer-worker")


def _erase(gateway: GatewayClient, subject_id: str) -> None:
    """Erases the subject: its queued renders leave the work queue (retention purges its job subjects)."""
    erasure = gateway.json("DELETE", f"/v1/subjects/{subject_id}", expect=(202,))["erasure_id"]
    deadline = time.monotonic() + 120
    while gateway.json("GET", f"/v1/erasures/{erasure}")["status"] != "completed":
        assert time.monotonic() < deadline, "the erasure did not complete"
        time.sleep(0.2)


async def _queued(stack: DevStack, tenant: str) -> int:
    """The tenant's render jobs still in the work queue (waiting, or held by a worker)."""
    nc = await nats.connect(_admin_url(stack))
    try:
        backlogs = await list_backlogs(nc.jetstream(), RENDER_QUEUES)
        return sum(backlog.pending + backlog.unacked for backlog in backlogs if backlog.tenant == tenant)
    finally:
        await nc.close()


async def test_a_tenants_first_render_waits_for_at_most_one_job_of_a_tenant_with_200_queued(
    stack: DevStack, record_log: RecordLog
) -> None:
    tenant_a, gateway_a = _tenant_client(stack, "fair-a")
    tenant_b, gateway_b = _tenant_client(stack, "fair-b")
    subject_a = await asyncio.to_thread(_subject_with_photo, gateway_a)
    subject_b = await asyncio.to_thread(_subject_with_photo, gateway_b)
    stack.stop_service("renderer-worker")  # A's backlog builds up whole before any of it runs
    try:
        backlog = [await asyncio.to_thread(_submit, gateway_a, subject_a) for _ in range(BACKLOG)]
        _worker_running(stack)
        # The worker is well into A's queue (it served A last) when B submits.
        await _until(lambda: len(record_log.started(tenant_a)) >= 2, 300, "two of A's renders starting")
        render_b = await asyncio.to_thread(_submit, gateway_b, subject_b)
        # Where B's first write lies in the server's order of writes (the log hears it a moment after the
        # submit answers: it is a subscription, read here, not the server's own state).
        await _until(lambda: record_log.index(render_b) is not None, 30, "B's record in the log")
        submitted = record_log.index(render_b)
        assert submitted is not None
        began = await _until(lambda: record_log.index(render_b, RUNNING), 300, "B's render starting")

        a_meanwhile = record_log.started(tenant_a, submitted, began)
        assert len(a_meanwhile) <= 1, f"B waited for {len(a_meanwhile)} of A's renders to start"
        a_so_far = record_log.started(tenant_a)
        assert len(a_so_far) < BACKLOG // 2, "A's backlog was still queued when B's render started"
        assert set(a_so_far) <= set(backlog)
        assert record_log.started(tenant_b) == [render_b]
        finished = await asyncio.to_thread(
            gateway_b.wait, f"/v1/renders/{render_b}", lambda r: r["status"] != "running", 300, print, "B"
        )
        assert finished["status"] == "succeeded", finished
    finally:
        _worker_running(stack)
        await asyncio.to_thread(_erase, gateway_a, subject_a)
        gateway_a.close()
        gateway_b.close()
    # The erasure purged A's queued jobs; the one running is cancelled by its worker (a moment later).
    deadline = time.monotonic() + 60
    while left := await _queued(stack, tenant_a):
        assert time.monotonic() < deadline, f"{left} of A's jobs stayed queued after its subject's erasure"
        await asyncio.sleep(0.2)


async def test_within_a_tenant_an_interactive_render_starts_before_bulk_ones_queued_earlier(
    stack: DevStack, record_log: RecordLog
) -> None:
    tenant, gateway = _tenant_client(stack, "prio")
    subject_id = await asyncio.to_thread(_subject_with_photo, gateway)
    stack.stop_service("renderer-worker")
    try:
        bulk = [await asyncio.to_thread(_submit, gateway, subject_id, "bulk") for _ in range(2)]
        interactive = await asyncio.to_thread(_submit, gateway, subject_id, "interactive")
        _worker_running(stack)
        await _until(lambda: len(record_log.started(tenant)) == 3, 300, "the three renders starting")
    finally:
        _worker_running(stack)
    assert record_log.started(tenant) == [interactive, *bulk]
    records = [gateway.json("GET", f"/v1/renders/{render_id}") for render_id in (interactive, *bulk)]
    assert [record["priority"] for record in records] == ["interactive", "bulk", "bulk"]
    gateway.close()
