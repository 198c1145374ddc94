"""Gateway throughput: `GET /v1/trainings/{id}` through the real gateway process and its real backends,
against the framework's ceiling on this machine (a bare FastAPI route returning a constant).

Both servers are uvicorn with one worker, the same options (no access log, our settings for logs), on
127.0.0.1. The same load generator drives both: an asyncio HTTP/1.1 keep-alive client written for this
(httpx itself would be the bottleneck), N connections each sending its next request as soon as the
previous answer is in, for a fixed duration after a warm-up. The gateway runs as the dev stack runs it
(`python -m gateway serve`, its default settings but for a rate limit no load here reaches): every request
verifies the dev-signed JWT (cached verification, as in production), checks the scope, spends a
rate-limit token of its caller and of its tenant (at the edge, with the body, concurrency and
header-timeout limits) and goes through the same middleware (request id, deadline, metrics, access log:
DEBUG for a quick successful read by default; trace context, spans recorded only where an OTLP endpoint is
set). It authorizes the training for the token's tenant (and an end-user token's subject) against a live
subject on every request; the record itself comes from the gateway's job cache
(`LIKENESS_JOB_CACHE_SECONDS`, 1 s, dropped by the subject's NATS events): one GetTraining (trainer) and
one GetSubject (retention) a second, shared by all connections, like many clients polling one job.
`--job-cache-seconds 0` measures the uncached path. Gateway settings can also be given in the
environment (e.g. `LIKENESS_ACCESS_LOG_READS=true`). The backends (retention, ingest, trainer, renderer
`serve` roles) and NATS, SeaweedFS and OpenBao run on the same machine (no workers: the training stays
queued).

Prints a table, then one JSON line:
`{"bench": "gateway", "of_ceiling": ..., "rps": ..., "p99_ms": ..., "goal": 0.5}`

    .venv/bin/python bench/gateway.py [--connections 32] [--seconds 5] [--rounds 2] [--job-cache-seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

GOAL_OF_CEILING = 0.6
BENCH_SERVICES = ["retention", "ingest", "trainer", "renderer", "gateway"]
BENCH_TENANT = "bench"


def bare_app() -> object:
    """The ceiling: FastAPI's cheapest route (a constant dict, no dependencies, no middleware)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/v1/trainings/{training_id}")
    async def constant(training_id: str) -> dict[str, str]:
        return {"id": training_id, "status": "queued"}

    return app


def serve_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(
        bare_app(), host="127.0.0.1", port=port, log_config=None, access_log=False, server_header=False
    )


# ------------------------------------------------------------------------------------------ load generator


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _connection(
    port: int, request: bytes, until: float, measure_from: float, latencies: list[float], errors: list[int]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while True:
            started = time.perf_counter()
            if started >= until:
                return done
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            finished = time.perf_counter()
            if started >= measure_from:
                if status != 200:
                    errors.append(status)
                latencies.append((finished - started) * 1000)
                done += 1
    finally:
        writer.close()


async def load(port: int, path: str, token: str, connections: int, seconds: float, warmup: float) -> Result:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\n\r\n"
    ).encode()
    start = time.perf_counter()
    measure_from = start + warmup
    until = measure_from + seconds
    latencies: list[float] = []
    errors: list[int] = []
    counts = await asyncio.gather(
        *(_connection(port, request, until, measure_from, latencies, errors) for _ in range(connections))
    )
    return Result(sum(counts), len(errors), seconds, latencies)


# ------------------------------------------------------------------------------------------ setup


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.2)


def _prepare_training(base_url: str, token: str) -> str:
    from likeness_dev.samples import sample_photos

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        consent = {"consent": {"purpose": "headshots", "policy_version": "1"}}
        subject = client.post("/v1/subjects", json=consent).json()["id"]
        files = [("file", (name, data, "image/jpeg")) for name, data in sample_photos(2)]
        uploaded = client.post(f"/v1/subjects/{subject}/photos", files=files)
        uploaded.raise_for_status()
        response = client.post(f"/v1/subjects/{subject}/trainings", json={})
        response.raise_for_status()
        training: str = response.json()["id"]
        assert client.get(f"/v1/trainings/{training}").status_code == 200
        return training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--job-cache-seconds",
        type=float,
        help="the gateway's LIKENESS_JOB_CACHE_SECONDS (default: the gateway's own default; 0: no cache)",
    )
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return

    from likeness_dev.ports import free_port
    from likeness_dev.stack import DevStack

    with tempfile.TemporaryDirectory(prefix="likeness-bench-gateway-") as tmp:
        print("starting infra and services (retention, ingest, trainer, renderer serve; gateway)", flush=True)
        stack = DevStack.start(
            Path(tmp),
            services=BENCH_SERVICES,
            # The bench measures the gateway, not the limiter: a budget no load here reaches.
            extra_env={
                "LIKENESS_MIN_PHOTOS_FOR_TRAINING": "2",
                "LIKENESS_RATE_LIMIT_PER_SECOND": "1000000",
                "LIKENESS_RATE_LIMIT_BURST": "1000000",
                "LIKENESS_TENANT_RATE_LIMIT_PER_SECOND": "1000000",
                "LIKENESS_TENANT_RATE_LIMIT_BURST": "1000000",
                **(
                    {"LIKENESS_JOB_CACHE_SECONDS": str(args.job_cache_seconds)}
                    if args.job_cache_seconds is not None
                    else {}
                ),
            },
        )
        bare_port = free_port()
        bare = subprocess.Popen(
            [sys.executable, __file__, "--serve-bare", str(bare_port)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            token = stack.mint_token(tenant=BENCH_TENANT)
            training = _prepare_training(stack.gateway_url, token)
            _wait_http(f"http://127.0.0.1:{bare_port}/v1/trainings/{training}")
            gateway_port = int(stack.gateway_url.rsplit(":", 1)[1])
            path = f"/v1/trainings/{training}"
            results: dict[str, list[Result]] = {"ceiling": [], "gateway": []}
            for _ in range(args.rounds):
                for name, port in (("ceiling", bare_port), ("gateway", gateway_port)):
                    result = asyncio.run(load(port, path, token, args.connections, args.seconds, args.warmup))
                    results[name].append(result)
        finally:
            bare.terminate()
            bare.wait(10)
            stack.stop()

    best = {name: max(runs, key=lambda r: r.rps) for name, runs in results.items()}
    print()
    cache = "default" if args.job_cache_seconds is None else f"{args.job_cache_seconds:g} s"
    print(
        f"GET /v1/trainings/{{id}}: {args.connections} connections, {args.seconds:g} s x {args.rounds} rounds"
        f" (gateway job cache: {cache})"
    )
    print(
        f"{'server':<10} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}   "
        "(best round; every round's req/s)"
    )
    for name, result in best.items():
        rounds = ", ".join(f"{r.rps:.0f}" for r in results[name])
        print(
            f"{name:<10} {result.rps:>10.0f} {result.percentile(0.5):>9.2f} {result.percentile(0.99):>9.2f} "
            f"{result.errors:>7}   ({rounds})"
        )
    gateway, ceiling = best["gateway"], best["ceiling"]
    of_ceiling = gateway.rps / ceiling.rps
    print(f"gateway / ceiling: {of_ceiling:.3f} (goal >= {GOAL_OF_CEILING})")
    print(
        json.dumps(
            {
                "bench": "gateway",
                "of_ceiling": round(of_ceiling, 3),
                "rps": round(gateway.rps, 1),
                "p99_ms": round(gateway.percentile(0.99), 2),
                "goal": GOAL_OF_CEILING,
            }
        )
    )
    if gateway.errors:
        raise SystemExit(f"the gateway answered {gateway.errors} requests with an error")


if __name__ == "__main__":
    main()
