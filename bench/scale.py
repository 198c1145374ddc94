"""Cost curves to 100k people: how sweeps, listings, erasures and memory grow with the subjects of a tenant.

One dev stack per size (NATS JetStream, SeaweedFS S3, OpenBao, and the retention, ingest, trainer,
renderer and gateway `serve` processes, as `likeness dev up` runs them), all running side by side (default
1k, 10k and 100k subjects of one tenant). Subjects are opened through retention's own path, `OpenSubject`
over mutual TLS with the gateway's certificate and a tenant token, many calls at once: each gets its Vault
Transit key, its KV records (subject, consent grant), its `subject.opened` event and audit records,
exactly as a real one. Once every stack holds its size:

- **reaper sweep**: one full pass of retention's reaper (`RetentionServicer.sweep`, run here against the
  stack's servers and buckets: the `Sweep` RPC has no caller), seconds per 1,000 subjects;
- **KV listing**: every record of the `subjects` bucket (`RetentionRecords.all_subjects`, what the reaper
  and the orphan sweep read), seconds per 1,000 subjects;
- **ListSubjects page**: `GET /v1/subjects?limit=50` through the gateway (first page and the page after
  it), p50 in ms; retention's `ListSubjects` called directly (the page without the gateway's hop) and
  the same page code in this process (without retention's process); and a **cold page**, the first
  after every server and service sat idle (`--cold-idle` s: nats-server has let its block caches go);
- **erasure of one subject holding 1,000 objects** (sealed S3 objects under its prefix): from
  `EraseSubject` to the erasure record's `completed_at`, in seconds;
- **resident memory** (VmRSS, with children) of each service process, in MB.

Why side by side: a page is some 15 ms, and on a shared machine the load drifts by more than that over
the minutes it takes to open 100k subjects. Measured one size after the other (this bench before), the
page read 21 ms at 1k and 78 ms at 100k on one run (ratio 3.7), while at 100k the same page, measured
from another process, took 12 to 14 ms. Measured in rounds that alternate between the sizes, each round's
order turned, every size sees the same load, and the ratio is what the size does. The long operations
(sweep, listing, erasure) alternate too, in `--long-rounds` rounds, and keep each one's minimum (the
round the machine disturbed least): a 100k sweep takes some 15 s, too long to repeat for a median.

The retention processes' own periodic sweeps are pushed out of the run
(`LIKENESS_SWEEP_INTERVAL_SECONDS`) so that only the measured ones run. Each figure is printed at each
size with its ratio largest / smallest size (100k / 1k by default; goal <= 1.5, flat or better). The last
line is one JSON object.

    .venv/bin/python bench/scale.py [--sizes 1000,10000,100000] [--objects 1000] [--quick]

`--quick` is `--sizes 100,1000 --objects 100 --page-rounds 10 --cold-rounds 3`, for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

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
#: Subjects on a page (and the gateway's `limit`).
PAGE = 50
#: The figures whose ratio is judged, with their unit (the RSS figures are added per service).
FIGURES = {
    "sweep_s_per_1k": "s / 1k subjects",
    "kv_list_s_per_1k": "s / 1k subjects",
    "list_page_ms": "ms (p50)",
    "list_next_page_ms": "ms (p50)",
    "list_page_cold_ms": "ms (p50)",
    "list_page_grpc_ms": "ms (p50)",
    "list_page_local_ms": "ms (p50)",
    "erase_1000_objects_s": "s",
    "erase_key_destroyed_s": "s",
}


#: The figures the goal is set for (the others explain them).
JUDGED = (
    "sweep_s_per_1k",
    "kv_list_s_per_1k",
    "list_page_ms",
    "list_next_page_ms",
    "list_page_cold_ms",
    "erase_1000_objects_s",
)

T = TypeVar("T")


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


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def turned(items: list[T], turn: int) -> list[T]:
    """`items` starting at position `turn` (mod len): each round of a side-by-side measurement begins with
    another size, so none is always measured first (or last) in a round."""
    start = turn % len(items)
    return items[start:] + items[:start]


def timed_ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


class Scale:
    """One dev stack grown to one size, and the measurements taken on it."""

    def __init__(self, size: int, stack: DevStack, servicer: RetentionServicer, objects: int) -> None:
        self.size = size
        self.stack = stack
        self.servicer = servicer
        self.objects = objects
        self.caller = CallerToken(stack.jwt_secret)
        self.caller.act_as(TENANT)  # the tenant's back end: every scope, tenant-wide
        tls = ClientTls(stack.tls_dir("gateway"))
        self.channel = tls.channel(
            stack.services["retention"].address, "retention", interceptors=self.caller.interceptors()
        )
        self.stub = retention_pb2_grpc.RetentionServiceStub(self.channel)
        self.opened = 0
        self.pool = ThreadPoolExecutor(max_workers=16)
        self.http = httpx.Client(
            base_url=stack.gateway_url,
            headers={"Authorization": f"Bearer {stack.mint_token(tenant=TENANT)}"},
            timeout=60,
        )
        self.point = Point(size)
        #: Page samples in ms, by figure, gathered over the side-by-side rounds.
        self.samples: dict[str, list[float]] = {}
        #: Samples of the long operations (sweep, listing, erasure), one per round.
        self.long_samples: dict[str, list[float]] = {}

    # ------------------------------------------------------------------------------------------ growth

    async def open_subject(self) -> str:
        request = retention_pb2.OpenSubjectRequest(tenant=TENANT, consent=CONSENT)
        response = await self.stub.OpenSubject(request, timeout=120)
        return str(response.subject.id)

    async def grow(self) -> None:
        """Opens subjects until the tenant has its size; notes the subjects opened per second."""
        started = time.monotonic()
        remaining = iter(range(self.size - self.opened))

        async def opener() -> None:
            for _ in remaining:
                await self.open_subject()
                self.opened += 1
                if self.opened % 5000 == 0:
                    say(f"{self.opened} subjects ({time.monotonic() - started:.0f} s)")

        await asyncio.gather(*(opener() for _ in range(CONCURRENCY)))
        self.point.figures["open_per_s"] = self.size / (time.monotonic() - started)
        say(f"{self.size} subjects (opened at {self.point.figures['open_per_s']:.0f}/s)")

    async def settle(self) -> None:
        """Waits until every durable consumer of the events stream has handled what the growth published
        (retention's deadline consumer handles each `subject.opened` event: opened 48 at a time, it falls
        behind, and a page measured during the catch-up would time the backlog, not the tenant)."""
        js = self.servicer.platform.bus.js
        started, backlog = time.monotonic(), -1
        while True:
            pending = sum(
                int(info.num_pending or 0) + int(info.num_ack_pending or 0)
                for info in await js.consumers_info(EVENTS_STREAM)
            )
            backlog = max(backlog, pending)
            if pending == 0:
                break
            if time.monotonic() - started > 1800:
                raise RuntimeError(f"{pending} events still pending after 30 min")
            await asyncio.sleep(0.5)
        self.point.figures["events_backlog"] = backlog
        self.point.figures["events_settle_s"] = time.monotonic() - started
        say(f"{self.size}: {backlog} events were pending; handled in {time.monotonic() - started:.1f} s")

    # ------------------------------------------------------------------------------------------ long ops

    async def sweep_and_listing(self) -> None:
        started = time.monotonic()
        await self.servicer.sweep()
        self.note_long("sweep_s_per_1k", (time.monotonic() - started) / self.size * 1000)
        started = time.monotonic()
        listed = await self.servicer.records.all_subjects()
        self.note_long("kv_list_s_per_1k", (time.monotonic() - started) / self.size * 1000)
        if len(listed) < self.opened:
            raise RuntimeError(f"the KV listing found {len(listed)} subjects, not {self.opened}")

    async def erasure(self) -> None:
        """Opens a subject, stores `objects` sealed objects under its prefix, erases it: seconds from the
        request to the erasure's completion and to its key's destruction (the record's own timestamps,
        same machine and clock). The erased subject leaves the tenant as it was."""
        subject_id = await self.open_subject()
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
        if got.erasure.objects_deleted < self.objects:
            raise RuntimeError(f"the erasure deleted {got.erasure.objects_deleted} objects of {self.objects}")
        completed = from_timestamp(got.erasure.completed_at)
        destroyed = from_timestamp(got.erasure.key_destroyed_at)
        assert completed is not None
        assert destroyed is not None
        self.note_long("erase_1000_objects_s", completed.timestamp() - sent)
        self.note_long("erase_key_destroyed_s", destroyed.timestamp() - sent)

    def note_long(self, figure: str, value: float) -> None:
        self.long_samples.setdefault(figure, []).append(value)

    def settle_long_ops(self) -> None:
        """Each long operation's least disturbed round (its minimum): a sweep of 100k subjects takes some
        15 s, too long to repeat for a median, and what slows one round is the machine, not the size."""
        self.point.figures |= {figure: min(samples) for figure, samples in self.long_samples.items()}

    def memory(self) -> None:
        for name in SERVICES:
            pid = self.stack.services[name].process.pid or 0
            self.point.figures[f"rss_mb_{name}"] = rss_mb(pid)

    # ------------------------------------------------------------------------------------------ pages

    def note(self, figure: str, ms: float) -> None:
        self.samples.setdefault(figure, []).append(ms)

    def gateway_pages(self) -> tuple[float, float]:
        """The first page of `GET /v1/subjects?limit=50` and the page after it, in ms (checked)."""
        first: list[httpx.Response] = []
        first_ms = timed_ms(lambda: first.append(self.http.get("/v1/subjects", params={"limit": PAGE})))
        body = first[0].raise_for_status().json()
        if len(body["subjects"]) != PAGE or not body.get("next_cursor"):
            raise RuntimeError(f"unexpected first page: {len(body['subjects'])} subjects")
        after: list[httpx.Response] = []
        params = {"limit": PAGE, "cursor": body["next_cursor"]}
        next_ms = timed_ms(lambda: after.append(self.http.get("/v1/subjects", params=params)))
        shown = {subject["id"] for subject in after[0].raise_for_status().json()["subjects"]}
        if shown & {subject["id"] for subject in body["subjects"]}:
            raise RuntimeError("the second page repeats subjects of the first")
        return first_ms, next_ms

    def gateway_page(self) -> float:
        """One first page through the gateway, in ms (checked)."""
        got: list[httpx.Response] = []
        ms = timed_ms(lambda: got.append(self.http.get("/v1/subjects", params={"limit": PAGE})))
        if len(got[0].raise_for_status().json()["subjects"]) != PAGE:
            raise RuntimeError("a cold page came back short")
        return ms

    async def grpc_page(self) -> float:
        """Retention's `ListSubjects` (first page) called directly: the page without the gateway's hop."""
        request = retention_pb2.ListSubjectsRequest(tenant=TENANT, page_size=PAGE)
        started = time.perf_counter()
        page = await self.stub.ListSubjects(request, timeout=60)
        elapsed = (time.perf_counter() - started) * 1000
        if len(page.subjects) != PAGE:
            raise RuntimeError(f"ListSubjects gave {len(page.subjects)} subjects")
        return elapsed

    async def local_page(self) -> float:
        """The same page code (`subject_page`) run in this process against the stack's servers: the page
        without retention's process around it."""
        started = time.perf_counter()
        listed = await self.servicer.subject_page(TENANT, PAGE, "")
        elapsed = (time.perf_counter() - started) * 1000
        if len(listed) != PAGE + 1:
            raise RuntimeError(f"subject_page gave {len(listed)} subjects")
        return elapsed

    async def page_round(self) -> None:
        first, second = await asyncio.to_thread(self.gateway_pages)
        self.note("list_page_ms", first)
        self.note("list_next_page_ms", second)
        self.note("list_page_grpc_ms", await self.grpc_page())
        self.note("list_page_local_ms", await self.local_page())

    def settle_pages(self) -> None:
        self.point.figures |= {figure: p50(samples) for figure, samples in self.samples.items()}

    async def close(self) -> None:
        self.http.close()
        await self.channel.close(None)
        self.pool.shutdown()


async def page_rounds(scales: list[Scale], rounds: int, cold_rounds: int, cold_idle: float) -> None:
    """The pages of every size in rounds that alternate between the sizes (see the module): warm rounds
    back to back, then cold ones, each after every stack sat idle for `cold_idle` seconds."""
    for scale in scales:  # a first page each, unmeasured: connections made, code paths warmed
        await asyncio.to_thread(scale.gateway_pages)
    for turn in range(rounds):
        for scale in turned(scales, turn):
            await scale.page_round()
    for turn in range(cold_rounds):
        await asyncio.sleep(cold_idle)
        for scale in turned(scales, turn):
            scale.note("list_page_cold_ms", await asyncio.to_thread(scale.gateway_page))
    for scale in scales:
        scale.settle_pages()


async def connect(size: int, stack: DevStack, objects: int, exits: contextlib.AsyncExitStack) -> Scale:
    """A `Scale` for the stack: retention's servicer in this process against the stack's servers."""
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
    exits.push_async_callback(platform.close)
    records = await RetentionRecords.open(platform.bus)
    scale = Scale(size, stack, RetentionServicer(platform, records, settings), objects)
    exits.push_async_callback(scale.close)
    return scale


async def run(stacks: dict[int, DevStack], args: argparse.Namespace) -> list[Point]:
    async with contextlib.AsyncExitStack() as exits:
        scales = [await connect(size, stack, args.objects, exits) for size, stack in stacks.items()]
        for scale in scales:
            await scale.grow()
        for scale in scales:
            await scale.settle()
        for turn in range(args.long_rounds):
            for scale in turned(scales, turn):
                await scale.sweep_and_listing()
                say(f"{scale.size}: sweep and listing measured (round {turn + 1})")
        await page_rounds(scales, args.page_rounds, args.cold_rounds, args.cold_idle)
        say("pages measured")
        for turn in range(args.long_rounds):
            for scale in turned(scales, turn):
                await scale.erasure()
        for scale in scales:
            scale.memory()
            scale.settle_long_ops()
            say(f"{scale.size}: " + ", ".join(f"{k} {v:.3g}" for k, v in scale.point.figures.items()))
        return [scale.point for scale in scales]


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


def start_stacks(sizes: list[int], exits: contextlib.ExitStack) -> dict[int, DevStack]:
    """One dev stack per size, each in its own directory, stopped when `exits` closes."""
    stacks: dict[int, DevStack] = {}
    for size in sizes:
        home = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix=f"likeness-bench-scale-{size}-")))
        say(f"starting infra and services ({', '.join(SERVICES)}) for {size:,} subjects")
        stack = DevStack.start(
            home,
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
        exits.callback(stack.stop)
        stacks[size] = stack
    return stacks


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="comma-separated subject counts (one stack each)"
    )
    parser.add_argument("--objects", type=int, default=1000, help="objects of the erased subject")
    parser.add_argument("--page-rounds", type=int, default=40, help="warm page rounds (every size each)")
    parser.add_argument("--cold-rounds", type=int, default=8, help="cold page rounds (every size each)")
    parser.add_argument("--cold-idle", type=float, default=12.0, help="idle seconds before a cold round")
    parser.add_argument(
        "--long-rounds", type=int, default=2, help="rounds of the sweep, listing and erasure (minimum kept)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="--sizes 100,1000 --objects 100 --page-rounds 10 --cold-rounds 3"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.objects, args.page_rounds, args.cold_rounds = "100,1000", 100, 10, 3
    args.sizes = sorted({int(size) for size in args.sizes.split(",")})
    if len(args.sizes) < 2 or args.sizes[0] <= PAGE:
        parser.error(f"give at least two sizes, the smallest over {PAGE} (one page must not hold them all)")
    if min(args.page_rounds, args.cold_rounds, args.long_rounds) < 1:
        parser.error("give at least one round of each kind")

    started = time.monotonic()
    with contextlib.ExitStack() as exits:
        stacks = start_stacks(args.sizes, exits)
        points = asyncio.run(run(stacks, args))
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
