"""What one gateway → service hop costs with mutual TLS, caller authorization and the end user's token
verified again by the service, against the same hop in plaintext with none of them.

Two gRPC servers in this process serve the same `TrainerService.GetTraining` (a constant answer, so only
the hop is measured, not a record lookup):

- baseline: a plaintext port, no interceptor (what main served before issue 14);
- ours: `likeness.grpc_server.GrpcServer` as every service runs it: mutual TLS with certificates of a
  throwaway CA (`likeness_dev.dev_pki`), the trainer's caller table (`trainer.callers`), the telemetry
  interceptor, and `UserTokenInterceptor` checking the forwarded token against the trainer's method rules
  (`trainer.method_rules`) with a dev-signed token, as the gateway forwards it.

The client calls each in turn, one call at a time (the added latency per call) and then with
`--concurrency` calls in flight (the added CPU per call shows as lost throughput); rounds alternate.
The token verifier keeps a verified token for a while (`likeness.user_tokens.CACHE_SECONDS`), as in
production: the signature is checked once, every call still runs the method's rule and the request's
tenant check.

    .venv/bin/python bench/grpc_hop.py [--calls 2000] [--concurrency 32] [--rounds 3]

Prints a table, then one JSON line:
`{"bench": "grpc_hop", "added_ms_p50": ..., "baseline_p50_ms": ..., "ours_p50_ms": ...,
"throughput_ratio": ..., "goal": 1.0}`
"""

# ruff: noqa: E402  (the imports below must come after the sys.path fix)

from __future__ import annotations

import sys
from pathlib import Path

# This file's folder holds bench/trainer.py, which would shadow the trainer service's package.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from likeness.config import CommonSettings
from likeness.grpc_server import GrpcServer
from likeness.grpc_tls import ReloadingServerCredentials, secure_channel
from likeness.grpc_user_tokens import UserTokenInterceptor, fixed_token_interceptors
from likeness.user_tokens import TokenVerifier
from likeness.v1 import trainer_pb2, trainer_pb2_grpc
from likeness_dev.dev_pki import DevCertificateAuthority
from likeness_dev.tokens import DEV_AUDIENCE, DEV_ISSUER, mint_dev_token
from trainer.callers import CALLERS
from trainer.method_rules import TOKEN_RULES  # noqa: F401 - registers the trainer's token rules

TENANT = "acme"
DEV_SECRET = "grpc-hop-bench-secret-of-enough-length"  # noqa: S105 - a throwaway signing key
GOAL_ADDED_MS = 1.0

Call = Callable[[], Awaitable[Any]]


class ConstantTrainer(trainer_pb2_grpc.TrainerServiceServicer):
    """GetTraining only: the other methods are never called here (gRPC answers UNIMPLEMENTED)."""

    async def GetTraining(self, request: Any, context: Any) -> trainer_pb2.GetTrainingResponse:
        training = trainer_pb2.Training(id=request.training_id, tenant=request.tenant)
        return trainer_pb2.GetTrainingResponse(training=training)


async def _latencies(call: Call, calls: int) -> list[float]:
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        seconds.append(time.perf_counter() - started)
    return seconds


async def _throughput(call: Call, calls: int, concurrency: int) -> float:
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls / (time.perf_counter() - started)


async def _run(args: argparse.Namespace) -> dict[str, float]:
    request = trainer_pb2.GetTrainingRequest(tenant=TENANT, training_id="trn_00000000000000000000000000")
    settings = CommonSettings(
        env="development", jwt_dev_secret=DEV_SECRET, jwt_issuer=DEV_ISSUER, jwt_audience=DEV_AUDIENCE
    )
    token = mint_dev_token(DEV_SECRET, TENANT, ["trainings:read", "tenant:all"])
    with tempfile.TemporaryDirectory() as folder:
        ca = DevCertificateAuthority.create()
        trainer_tls = ca.issue("trainer").write(Path(folder) / "trainer")
        gateway_material = ca.issue("gateway").material

        baseline = grpc.aio.server()
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(ConstantTrainer(), baseline)  # type: ignore[abstract]
        baseline_port = baseline.add_insecure_port("127.0.0.1:0")
        ours = GrpcServer(
            0,
            [trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name],
            {},
            tls=ReloadingServerCredentials(trainer_tls),
            callers=CALLERS,
            health_port=0,
            user_tokens=UserTokenInterceptor(TokenVerifier(settings)),  # the trainer's rules: imported above
            host="127.0.0.1",
            grace=0,
        )
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(ConstantTrainer(), ours.server)  # type: ignore[abstract]
        await baseline.start()
        await ours.start()
        plain_channel = grpc.aio.insecure_channel(f"127.0.0.1:{baseline_port}")
        tls_channel = secure_channel(
            f"127.0.0.1:{ours.port}",
            gateway_material,
            "trainer",
            interceptors=fixed_token_interceptors(token),
        )
        plain_stub = trainer_pb2_grpc.TrainerServiceStub(plain_channel)
        tls_stub = trainer_pb2_grpc.TrainerServiceStub(tls_channel)
        calls: dict[str, Call] = {
            "baseline": lambda: plain_stub.GetTraining(request, timeout=5),
            "ours": lambda: tls_stub.GetTraining(request, timeout=5),
        }
        try:
            for call in calls.values():  # warm-up: connections, handshakes, the token's first verification
                await _latencies(call, 200)
            latencies: dict[str, list[float]] = {name: [] for name in calls}
            rates: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(args.rounds):
                for name, call in calls.items():
                    latencies[name] += await _latencies(call, args.calls)
                    rates[name].append(await _throughput(call, args.calls, args.concurrency))
        finally:
            await plain_channel.close(None)
            await tls_channel.close(None)
            await baseline.stop(None)
            await ours.stop()

    p50 = {name: statistics.median(values) * 1000 for name, values in latencies.items()}
    p99 = {name: statistics.quantiles(values, n=100)[98] * 1000 for name, values in latencies.items()}
    best = {name: max(values) for name, values in rates.items()}
    print(
        f"GetTraining, one hop: {args.calls} calls x {args.rounds} rounds, then {args.concurrency} in flight"
    )
    print(f"{'server':<10} {'p50 ms':>8} {'p99 ms':>8} {'calls/s':>9}")
    for name in calls:
        print(f"{name:<10} {p50[name]:>8.3f} {p99[name]:>8.3f} {best[name]:>9.0f}")
    added = p50["ours"] - p50["baseline"]
    print(f"added per call (p50): {added:.3f} ms (goal < {GOAL_ADDED_MS} ms)")
    return {
        "added_ms_p50": round(added, 3),
        "baseline_p50_ms": round(p50["baseline"], 3),
        "ours_p50_ms": round(p50["ours"], 3),
        "throughput_ratio": round(best["ours"] / best["baseline"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    figures = asyncio.run(_run(parser.parse_args()))
    print(json.dumps({"bench": "grpc_hop", **figures, "goal": GOAL_ADDED_MS}))


if __name__ == "__main__":
    main()
