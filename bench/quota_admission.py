"""What exact concurrency quotas cost: a tenant's submits admitted through the fence, against the check
alone (as before the fence), side by side on the real NATS.

Two serve replicas (two `TenantQuotas`, each on its own connection) take a burst of one tenant's submits at
once, half each, as `SubmitRender` makes them: the quota check, the job's record written (a KV put), the
job published.

- **fenced** (ours): each replica's submits take turns from the check to the publish
  (`TenantQuotas.admitting`), each job is published under its check's fence, and a submit raced past by the
  other replica checks again (`publish_admitted`);
- **check only** (the baseline, before the fence): check, write, publish, no turns and no fence.

Throughput rounds alternate between the two (each round's order turned), with a limit no burst reaches;
the figures are submits per second, the best round of each. Exactness rounds use a limit of `LIMIT`:
`overshoot` is how many jobs past it were queued, the worst round (goal: none).

Judged: `overshoot` (at most `GOAL_OVERSHOOT`), and `of_tenant_rate`, the fenced rate over the most a
tenant may send (the gateway's tenant rate limit, 200 requests a second, held across replicas): the turns
must not be what limits a tenant (at least `GOAL_OF_TENANT_RATE`). `ratio`, fenced over check only, is
printed, not judged: the check alone is faster because it is not exact.

    .venv/bin/python bench/quota_admission.py [--rounds N] [--burst N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from nats.js.kv import KeyValue

from likeness.bus import Bus, job_nats_subject, stream_subject_counts
from likeness.provisioning import RENDER_STREAM
from likeness.quota_policy import QuotaSettings
from likeness.quotas import Fence, TenantQuotas
from likeness.v1 import jobs_pb2
from likeness_dev.infra import start_infra
from likeness_dev.testing import provisioned_kv

GOAL_OF_TENANT_RATE = 1.0
GOAL_OVERSHOOT = 0
#: The gateway's default `tenant_rate_limit_per_second`: the most requests a tenant may send, held across
#: replicas (`gateway.config`; the bench does not import the gateway).
TENANT_RATE_PER_SECOND = 200.0
LIMIT = 16
NO_LIMIT = 1_000_000


class Refused(Exception):
    pass


class CallContext:
    """What `likeness.rpc_errors.abort` uses of a gRPC call's context."""

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    async def abort(self, status: Any, message: str) -> None:
        raise Refused(message)


async def _submit(quotas: TenantQuotas, records: KeyValue, tenant: str, fenced: bool) -> bool:
    """One submit of a render job: True if admitted (queued)."""
    context: Any = CallContext()
    job_id = f"ren_{uuid.uuid4().hex[:26]}"
    nats_subject = job_nats_subject("render", tenant, f"sub_{uuid.uuid4().hex[:26]}", "interactive")
    job = jobs_pb2.RenderJob(render_id=job_id, tenant=tenant)

    async def judge() -> Any:
        return await quotas.render_refusal(tenant)

    async def publish(under: Fence) -> None:
        await quotas.bus.publish(nats_subject, job, msg_id=job_id, expect=under.headers() if fenced else None)

    async def withdraw() -> None:
        return None

    async def write_record() -> None:
        await records.put(f"{tenant}.{job_id}", job.SerializeToString())

    try:
        if not fenced:
            fence = await quotas.check(context, tenant, judge)
            await write_record()
            await publish(fence)
            return True
        async with quotas.admitting(tenant):
            fence = await quotas.check(context, tenant, judge)
            await write_record()
            await quotas.publish_admitted(context, tenant, fence, publish, judge, withdraw)
        return True
    except Refused:
        return False


async def _burst(
    replicas: list[TenantQuotas], records: list[KeyValue], size: int, fenced: bool
) -> tuple[float, int]:
    """A burst of one new tenant's submits, half to each replica: (seconds, jobs queued); then purged."""
    tenant = f"bench{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    await asyncio.gather(*(_submit(replicas[n % 2], records[n % 2], tenant, fenced) for n in range(size)))
    seconds = time.perf_counter() - started
    js = replicas[0].bus.js
    queued = sum((await stream_subject_counts(js, RENDER_STREAM, f"job.render.{tenant}.>")).values())
    await js.purge_stream(RENDER_STREAM, subject=f"job.render.{tenant}.>")
    return seconds, queued


def _replica(bus: Bus, limit: int) -> TenantQuotas:
    return TenantQuotas(bus, QuotaSettings(quota_concurrent_renders=limit), "render")


async def measure(nats_url: str, rounds: int, burst: int) -> dict[str, Any]:
    buses = [await Bus.connect(nats_url, f"bench-quota-{n}") for n in range(2)]
    try:
        bucket = f"bench_records_{uuid.uuid4().hex[:8]}"
        records = [await provisioned_kv(bus, bucket) for bus in buses]
        unbounded = [_replica(bus, NO_LIMIT) for bus in buses]
        bounded = [_replica(bus, LIMIT) for bus in buses]
        await _burst(unbounded, records, burst, True)  # warm-up: connections, the stream's caches
        rates: dict[bool, list[float]] = {True: [], False: []}
        overshoot: dict[bool, list[int]] = {True: [], False: []}
        for index in range(rounds):
            order = (True, False) if index % 2 == 0 else (False, True)  # each round's order turned
            for fenced in order:
                seconds, _ = await _burst(unbounded, records, burst, fenced)
                rates[fenced].append(burst / seconds)
                _, queued = await _burst(bounded, records, burst, fenced)
                overshoot[fenced].append(max(0, queued - LIMIT))
        return {
            "fenced_per_s": max(rates[True]),
            "check_only_per_s": max(rates[False]),
            "overshoot": max(overshoot[True]),
            "overshoot_check_only": max(overshoot[False]),
        }
    finally:
        for bus in buses:
            await bus.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6, help="rounds of each kind, alternating")
    parser.add_argument("--burst", type=int, default=200, help="submits at once per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="likeness-bench-quota-") as state:
        infra = start_infra(Path(state) / "infra")
        try:
            figures = asyncio.run(measure(infra.endpoints.nats_url, args.rounds, args.burst))
        finally:
            infra.stop()
    ratio = figures["fenced_per_s"] / figures["check_only_per_s"]
    of_tenant_rate = figures["fenced_per_s"] / TENANT_RATE_PER_SECOND
    print(
        f"quota admission: bursts of {args.burst} submits of one tenant, two replicas, {args.rounds} rounds"
    )
    print(f"{'':<12}{'submits/s (best)':>18}{f'queued past {LIMIT} (worst)':>26}")
    print(f"{'fenced':<12}{figures['fenced_per_s']:>18.0f}{figures['overshoot']:>26}")
    print(f"{'check only':<12}{figures['check_only_per_s']:>18.0f}{figures['overshoot_check_only']:>26}")
    print(f"fenced / check only: {ratio:.2f} (not judged: the check alone is not exact)")
    print(f"fenced / tenant rate limit ({TENANT_RATE_PER_SECOND:.0f}/s): {of_tenant_rate:.2f}")
    print(
        json.dumps(
            {
                "bench": "quota_admission",
                "of_tenant_rate": round(of_tenant_rate, 2),
                "overshoot": figures["overshoot"],
                "ratio": round(ratio, 2),
                "overshoot_check_only": figures["overshoot_check_only"],
                "fenced_per_s": round(figures["fenced_per_s"], 1),
                "check_only_per_s": round(figures["check_only_per_s"], 1),
                "burst": args.burst,
                "limit": LIMIT,
                "goals": {"of_tenant_rate": GOAL_OF_TENANT_RATE, "overshoot": GOAL_OVERSHOOT},
            }
        )
    )


if __name__ == "__main__":
    main()
