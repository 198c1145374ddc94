"""Cost curves to 100k people: how sweeps, listings, erasures and memory grow with the subjects of a tenant.

One dev stack (NATS JetStream, SeaweedFS S3, OpenBao, and the retention, ingest, trainer, renderer and
gateway `serve` processes, as `likeness dev up` runs them) is grown to each size in turn (default 1k, 10k,
100k subjects of one tenant). Subjects are opened through retention's own path, `OpenSubject` over mutual
TLS with the gateway's certificate and a tenant token, many calls at once: each gets its Vault Transit key,
its KV records (subject, consent grant), its `subject.opened` event and audit records, exactly as a real
one. At each size:

- **reaper sweep**: one full pass of retention's reaper (`RetentionServicer.sweep`, run here against the
  same servers and buckets: the `Sweep` RPC has no caller), seconds per 1,000 subjects;
- **KV listing**: every record of the `subjects` bucket (`RetentionRecords.all_subjects`, what the reaper
  and the orphan sweep read), seconds per 1,000 subjects;
- **ListSubjects page**: `GET /v1/subjects?limit=50` through the gateway (first page and the page after
  it), p50 in ms; and retention's `ListSubjects` called directly (the page without the gateway's hop);
- **erasure of one subject holding 1,000 objects** (sealed S3 objects under its prefix): from
  `EraseSubject` to the erasure record's `completed_at`, in seconds;
- **resident memory** (VmRSS, with children) of each service process, in MB.

The retention process's own periodic sweeps are pushed out of the run (`LIKENESS_SWEEP_INTERVAL_SECONDS`)
so that only the measured one runs. Each figure is printed at each size with its ratio largest / smallest
size (100k / 1k by default; goal <= 1.5, flat or better). The last line is one JSON object.

    .venv/bin/python bench/scale.py [--sizes 1000,10000,100000] [--objects 1000] [--quick]

`--quick` is `--sizes 100,1000 --objects 100 --page-rounds 10`, for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from likeness import ids
from likeness.grpc_tls import ClientTls
from likeness.object_names import photo_key
from likeness.provisioning import EVENTS_STREAM
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.timeutil import from_timestamp
from likeness.v1 import retention_pb2, retention_pb2_grpc
from likeness_dev.stack import DevStack
from likeness_dev.tokens import CallerToken
from retention.config import RetentionSettings
from retention.records import RetentionRecords
from retention.service import RetentionServicer

#: Goal for every ratio largest size / smallest size: flat (or better) within 50 %.
GOAL_RATIO = 1.5
TENANT = "scale"
SERVICES = ["retention", "ingest", "trainer", "renderer", "gateway"]
CONSENT = retention_pb2.Consent(purpose="headshots", policy_version="1")
ES = retention_pb2.ErasureStatus
#: OpenSubject calls in flight while growing the tenant.
CONCURRENCY = 48
#: The figures whose ratio is judged, with their unit (the RSS figures are added per service).
FIGURES = {
    "sweep_s_per_1k": "s / 1k subjects",
    "kv_list_s_per_1k": "s / 1k subjects",
    "list_page_ms": "ms (p50)",
    "list_next_page_ms": "ms (p50)",
    "list_page_grpc_ms": "ms (p50)",
    "list_page_local_ms": "ms (p50)",
    "erase_1000_objects_s": "s",
    "erase_key_destroyed_s": "s",
}


#: The figures the goal is set for (the others explain them).
JUDGED = ("sweep_s_per_1k", "kv_list_s_per_1k", "list_page_ms", "list_next_page_ms", "erase_1000_objects_s")


@dataclass
class Point:
    size: int
    figures: dict[str, float] = field(default_factory=dict)


def say(line: str) -> None:
    print(f"[scale] {line}", file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    """VmRSS of a process and its descendants, in MB (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class Scale:
    def __init__(self, stack: DevStack, servicer: RetentionServicer, objects: int, page_rounds: int) -> None:
        self.stack = stack
        self.servicer = servicer
        self.objects = objects
        self.page_rounds = page_rounds
        self.caller = CallerToken(stack.jwt_secret)
        self.caller.act_as(TENANT)  # the tenant's back end: every scope, tenant-wide
        tls = ClientTls(stack.tls_dir("gateway"))
        self.channel = tls.channel(
            stack.services["retention"].address, "retention", interceptors=self.caller.interceptors()
        )
        self.stub = retention_pb2_grpc.RetentionServiceStub(self.channel)
        self.opened = 0
        self.pool = ThreadPoolExecutor(max_workers=16)
        self.token = stack.mint_token(tenant=TENANT)

    async def open_subject(self) -> str:
        request = retention_pb2.OpenSubjectRequest(tenant=TENANT, consent=CONSENT)
        response = await self.stub.OpenSubject(request, timeout=120)
        return str(response.subject.id)

    async def grow_to(self, size: int) -> float:
        """Opens subjects until the tenant has `size`; returns the subjects opened per second."""
        wanted = size - self.opened
        if wanted <= 0:
            return 0.0
        started = time.monotonic()
        remaining = iter(range(wanted))

        async def opener() -> None:
            for _ in remaining:
                await self.open_subject()
                self.opened += 1
                if self.opened % 5000 == 0:
                    say(f"{self.opened} subjects ({time.monotonic() - started:.0f} s)")

        await asyncio.gather(*(opener() for _ in range(CONCURRENCY)))
        return wanted / (time.monotonic() - started)

    async def settle(self) -> tuple[int, float]:
        """Waits until every durable consumer of the events stream has handled what the growth published
        (retention's deadline consumer handles each `subject.opened` event: opened 48 at a time, it falls
        behind, and a page measured during the catch-up would time the backlog, not the tenant); returns
        the events that were pending and the seconds they took."""
        js = self.servicer.platform.bus.js
        started, backlog = time.monotonic(), -1
        while True:
            pending = sum(
                int(info.num_pending or 0) + int(info.num_ack_pending or 0)
                for info in await js.consumers_info(EVENTS_STREAM)
            )
            backlog = max(backlog, pending)
            if pending == 0:
                return backlog, time.monotonic() - started
            if time.monotonic() - started > 1800:
                raise RuntimeError(f"{pending} events still pending after 30 min")
            await asyncio.sleep(0.5)

    async def local_page_ms(self) -> float:
        """p50 of the same page code (`subject_page`) run in this process against the same servers: what
        the page costs without retention's process around it."""
        times = []
        for _ in range(self.page_rounds):
            started = time.perf_counter()
            listed = await self.servicer.subject_page(TENANT, 50, "")
            times.append((time.perf_counter() - started) * 1000)
            if len(listed) != 51:
                raise RuntimeError(f"subject_page gave {len(listed)} subjects")
        return statistics.median(times)

    async def sweep_seconds(self) -> float:
        started = time.monotonic()
        await self.servicer.sweep()
        return time.monotonic() - started

    async def kv_list_seconds(self) -> float:
        started = time.monotonic()
        listed = await self.servicer.records.all_subjects()
        elapsed = time.monotonic() - started
        if len(listed) < self.opened:
            raise RuntimeError(f"the KV listing found {len(listed)} subjects, not {self.opened}")
        return elapsed

    def page_ms(self) -> tuple[float, float]:
        """p50 of the first page of `GET /v1/subjects?limit=50` and of the page after it."""
        first, second = [], []
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.stack.gateway_url, headers=headers, timeout=60) as client:
            client.get("/v1/subjects", params={"limit": 50}).raise_for_status()  # warm-up
            for _ in range(self.page_rounds):
                started = time.perf_counter()
                response = client.get("/v1/subjects", params={"limit": 50})
                first.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                body = response.json()
                if len(body["subjects"]) != min(50, self.opened) or not body.get("next_cursor"):
                    raise RuntimeError(f"unexpected first page: {len(body['subjects'])} subjects")
                started = time.perf_counter()
                after = client.get("/v1/subjects", params={"limit": 50, "cursor": body["next_cursor"]})
                second.append((time.perf_counter() - started) * 1000)
                after.raise_for_status()
                if {s["id"] for s in after.json()["subjects"]} & {s["id"] for s in body["subjects"]}:
                    raise RuntimeError("the second page repeats subjects of the first")
        return statistics.median(first), statistics.median(second)

    async def grpc_page_ms(self) -> float:
        """p50 of retention's `ListSubjects` (first page of 50) called directly: the page without the
        gateway's hop."""
        request = retention_pb2.ListSubjectsRequest(tenant=TENANT, page_size=50)
        times = []
        for _ in range(self.page_rounds):
            started = time.perf_counter()
            page = await self.stub.ListSubjects(request, timeout=60)
            times.append((time.perf_counter() - started) * 1000)
            if len(page.subjects) != 50:
                raise RuntimeError(f"ListSubjects gave {len(page.subjects)} subjects")
        return statistics.median(times)

    async def erase_seconds(self) -> tuple[float, float]:
        """Opens a subject, stores `objects` sealed objects under its prefix, erases it: seconds from the
        request to the erasure's completion and to its key's destruction (the record's own timestamps,
        same machine and clock)."""
        subject_id = await self.open_subject()
        self.opened += 1
        loop = asyncio.get_running_loop()
        payload = os.urandom(1024)
        sealed = self.servicer.platform.sealed
        refs = [
            ObjectRef(TENANT, subject_id, photo_key(TENANT, subject_id, ids.new_id("pho")), "photo")
            for _ in range(self.objects)
        ]
        await asyncio.gather(*(loop.run_in_executor(self.pool, sealed.put, ref, payload) for ref in refs))
        sent = time.time()
        request = retention_pb2.EraseSubjectRequest(tenant=TENANT, subject_id=subject_id, cause="request")
        erasure_id = (await self.stub.EraseSubject(request, timeout=60)).erasure.id
        deadline = time.monotonic() + 600
        while True:
            got = await self.stub.GetErasure(
                retention_pb2.GetErasureRequest(tenant=TENANT, erasure_id=erasure_id), timeout=60
            )
            if got.erasure.status == ES.ERASURE_STATUS_COMPLETED:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the erasure did not complete: {got.erasure}")
            await asyncio.sleep(0.05)
        self.opened -= 1
        if got.erasure.objects_deleted < self.objects:
            raise RuntimeError(f"the erasure deleted {got.erasure.objects_deleted} objects of {self.objects}")
        completed = from_timestamp(got.erasure.completed_at)
        destroyed = from_timestamp(got.erasure.key_destroyed_at)
        assert completed is not None
        assert destroyed is not None
        return completed.timestamp() - sent, destroyed.timestamp() - sent

    def memory(self) -> dict[str, float]:
        return {f"rss_mb_{name}": rss_mb(self.stack.services[name].process.pid or 0) for name in SERVICES}

    async def measure(self, size: int) -> Point:
        point = Point(size)
        rate = await self.grow_to(size)
        say(f"{size} subjects (opened at {rate:.0f}/s)" if rate else f"{size} subjects")
        backlog, settled = await self.settle()
        say(f"{backlog} events were pending in the events stream's consumers; handled in {settled:.1f} s")
        point.figures["events_backlog"] = backlog
        point.figures["events_settle_s"] = settled
        sweep = await self.sweep_seconds()
        point.figures["sweep_s_per_1k"] = sweep / size * 1000
        listing = await self.kv_list_seconds()
        point.figures["kv_list_s_per_1k"] = listing / size * 1000
        first, second = await asyncio.to_thread(self.page_ms)
        point.figures["list_page_ms"] = first
        point.figures["list_next_page_ms"] = second
        point.figures["list_page_grpc_ms"] = await self.grpc_page_ms()
        point.figures["list_page_local_ms"] = await self.local_page_ms()
        erased, key_destroyed = await self.erase_seconds()
        point.figures["erase_1000_objects_s"] = erased
        point.figures["erase_key_destroyed_s"] = key_destroyed
        point.figures |= self.memory()
        point.figures["open_per_s"] = rate
        say(", ".join(f"{key} {value:.3g}" for key, value in point.figures.items()))
        return point

    async def close(self) -> None:
        await self.channel.close(None)
        self.pool.shutdown()


async def run(stack: DevStack, args: argparse.Namespace) -> list[Point]:
    env = stack.infra.endpoints.as_env()
    values: dict[str, Any] = {key.removeprefix("LIKENESS_").lower(): value for key, value in env.items()}
    values |= {
        "hmac_secret": stack.hmac_secret,
        "audit_pseudonym_secret": stack.audit_pseudonym_secret,
        "jwt_dev_secret": stack.jwt_secret,
        "replica_id": "scale-bench",
    }
    settings = RetentionSettings.model_validate(values)
    platform = await Platform.connect(settings, "scale-bench")
    try:
        records = await RetentionRecords.open(platform.bus)
        scale = Scale(stack, RetentionServicer(platform, records, settings), args.objects, args.page_rounds)
        try:
            return [await scale.measure(size) for size in args.sizes]
        finally:
            await scale.close()
    finally:
        await platform.close()


def ratios(points: list[Point]) -> dict[str, float]:
    first, last = points[0].figures, points[-1].figures
    names = [*FIGURES, *(key for key in first if key.startswith("rss_mb_"))]
    return {name: last[name] / first[name] for name in names if first.get(name)}


def table(points: list[Point], ratio: dict[str, float], label: str) -> list[str]:
    sizes = [f"{point.size:>10,}" for point in points]
    lines = [f"{'figure':<24} {'unit':<16}{''.join(sizes)} {label:>10}  goal <= {GOAL_RATIO:g}"]
    units = FIGURES | {key: "MB" for key in ratio if key.startswith("rss_mb_")}
    for name, unit in units.items():
        values = "".join(f"{point.figures.get(name, float('nan')):>10.4g}" for point in points)
        verdict = "ok" if ratio.get(name, 0.0) <= GOAL_RATIO else "NOT FLAT"
        lines.append(f"{name:<24} {unit:<16}{values} {ratio.get(name, float('nan')):>10.2f}  {verdict}")
    opened = "".join(f"{point.figures.get('open_per_s', 0.0):>10.0f}" for point in points)
    lines.append(f"{'(opened per second)':<24} {'subjects / s':<16}{opened}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="comma-separated subject counts, ascending"
    )
    parser.add_argument("--objects", type=int, default=1000, help="objects of the erased subject")
    parser.add_argument("--page-rounds", type=int, default=30, help="page requests per size")
    parser.add_argument("--quick", action="store_true", help="--sizes 100,1000 --objects 100")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.objects, args.page_rounds = "100,1000", 100, 10
    args.sizes = sorted(int(size) for size in args.sizes.split(","))
    if len(args.sizes) < 2 or args.sizes[0] <= 50:
        parser.error("give at least two sizes, the smallest over 50 (one page must not hold them all)")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="likeness-bench-scale-") as tmp:
        say(f"starting infra and services ({', '.join(SERVICES)})")
        stack = DevStack.start(
            Path(tmp),
            services=SERVICES,
            extra_env={
                "LIKENESS_LOG_LEVEL": "WARNING",
                "LIKENESS_RATE_LIMIT_PER_SECOND": "1000000",
                "LIKENESS_RATE_LIMIT_BURST": "1000000",
                "LIKENESS_TENANT_RATE_LIMIT_PER_SECOND": "1000000",
                "LIKENESS_TENANT_RATE_LIMIT_BURST": "1000000",
            },
            # Only the measured sweep runs (retention's own would overlap the measurements at random).
            service_env={"retention": {"LIKENESS_SWEEP_INTERVAL_SECONDS": "86400"}},
        )
        try:
            points = asyncio.run(run(stack, args))
        finally:
            stack.stop()
    wall = time.monotonic() - started

    ratio = ratios(points)
    label = f"{points[-1].size:,}/{points[0].size:,}"
    print()
    for line in table(points, ratio, label):
        print(line)
    print(f"wall time: {wall:.0f} s")
    figures: dict[str, Any] = {"bench": "scale", "sizes": [point.size for point in points]}
    for point in points:
        for name, value in point.figures.items():
            figures[f"{name}_{point.size}"] = round(value, 4)
    figures |= {f"{name}_ratio": round(value, 3) for name, value in ratio.items()}
    figures["wall_s"] = round(wall, 1)
    figures["goals"] = {f"{name}_ratio": GOAL_RATIO for name in FIGURES if name in JUDGED}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
