"""Erasure latency and throughput, against real servers (NATS JetStream, SeaweedFS S3, OpenBao) and the
retention service running as its own process, all started here in a temporary directory.

Each subject looks like a real one: 20 photos and their 20 face templates, a LoRA with 3 checkpoints and 40
rendered images, every object an envelope sealed under the subject's own Vault key (SealedObjects).

1. Single erasures, one after the other: time from the DELETE request (EraseSubject) to the key destroyed
   and to the purge complete, from the erasure record's own timestamps (same machine, same clock);
   p50 and p99. Goals: key destroyed p99 < 1 s, purge complete p99 < 10 s.
2. 50 subjects erased concurrently: erasures per second (all requests sent at once, until the last one
   completes).

Afterwards every subject's prefix is checked empty and its key gone. The last line is JSON.

    .venv/bin/python bench/erasure.py [--rounds 20] [--concurrent 50] [--photo-kib 64] [--model-kib 1024]
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from likeness import ids
from likeness.config import CommonSettings
from likeness.grpc_tls import secure_channel
from likeness.object_names import (
    checkpoint_key,
    face_template_key,
    lora_key,
    photo_key,
    render_image_key,
    subject_prefix,
)
from likeness.sealed import ObjectRef, SealedObjects
from likeness.store import ObjectStore
from likeness.timeutil import from_timestamp
from likeness.v1 import retention_pb2, retention_pb2_grpc
from likeness.vault_transit import SubjectKeys
from likeness_dev.dev_pki import DevCertificateAuthority
from likeness_dev.health import Probe, check
from likeness_dev.infra import start_infra
from likeness_dev.ports import free_port
from likeness_dev.procs import ManagedProcess
from likeness_dev.tokens import CallerToken

TENANT = "bench"
GOAL_KEY_P99 = 1.0
GOAL_PURGE_P99 = 10.0
CONSENT = retention_pb2.Consent(purpose="headshots", policy_version="1")
ES = retention_pb2.ErasureStatus


@dataclass(frozen=True)
class Shape:
    photos: int = 20
    checkpoints: int = 3
    renders: int = 40
    photo_bytes: int = 64 * 1024
    face_bytes: int = 512
    model_bytes: int = 1024 * 1024
    render_bytes: int = 64 * 1024

    @property
    def objects(self) -> int:
        return 2 * self.photos + 1 + self.checkpoints + self.renders

    @property
    def plaintext_bytes(self) -> int:
        photos = self.photos * (self.photo_bytes + self.face_bytes)
        return photos + (1 + self.checkpoints) * self.model_bytes + self.renders * self.render_bytes


def _objects(subject_id: str, shape: Shape) -> list[tuple[ObjectRef, int]]:
    """(object, plaintext size) of one subject, laid out as the services lay them out."""
    refs: list[tuple[ObjectRef, int]] = []
    for _ in range(shape.photos):
        photo = ids.new_id("pho")
        refs.append(
            (ObjectRef(TENANT, subject_id, photo_key(TENANT, subject_id, photo), "photo"), shape.photo_bytes)
        )
        face = face_template_key(TENANT, subject_id, photo)
        refs.append((ObjectRef(TENANT, subject_id, face, "face"), shape.face_bytes))
    training = ids.new_id("trn")
    refs.append(
        (ObjectRef(TENANT, subject_id, lora_key(TENANT, subject_id, training), "lora"), shape.model_bytes)
    )
    for step in range(1, shape.checkpoints + 1):
        key = checkpoint_key(TENANT, subject_id, training, step * 100)
        refs.append((ObjectRef(TENANT, subject_id, key, "checkpoint"), shape.model_bytes))
    render = ids.new_id("ren")
    for _ in range(shape.renders):
        key = render_image_key(TENANT, subject_id, render, ids.new_id("img"))
        refs.append((ObjectRef(TENANT, subject_id, key, "render"), shape.render_bytes))
    return refs


class Bench:
    def __init__(self, settings: CommonSettings, stub: retention_pb2_grpc.RetentionServiceStub, shape: Shape):
        self.settings = settings
        self.stub = stub
        self.shape = shape
        self.store = ObjectStore.from_settings(settings)
        self.keys = SubjectKeys.from_settings(settings)
        self.sealed = SealedObjects(self.keys, self.store)
        self.pool = ThreadPoolExecutor(max_workers=8)
        sizes = {shape.photo_bytes, shape.face_bytes, shape.model_bytes, shape.render_bytes}
        self.payloads = {size: os.urandom(size) for size in sizes}

    async def subject_with_data(self) -> str:
        opened = await self.stub.OpenSubject(retention_pb2.OpenSubjectRequest(tenant=TENANT, consent=CONSENT))
        subject_id = opened.subject.id
        loop = asyncio.get_running_loop()
        puts = [
            loop.run_in_executor(self.pool, self.sealed.put, ref, self.payloads[size])
            for ref, size in _objects(subject_id, self.shape)
        ]
        await asyncio.gather(*puts)
        return subject_id

    async def erase(self, subject_id: str) -> tuple[float, str]:
        """Sends the DELETE (EraseSubject); returns when it was sent (wall clock) and the erasure id."""
        sent = time.time()
        request = retention_pb2.EraseSubjectRequest(tenant=TENANT, subject_id=subject_id, cause="request")
        response = await self.stub.EraseSubject(request)
        return sent, response.erasure.id

    async def completed(
        self, erasure_id: str, timeout: float = 120.0, every: float = 0.01
    ) -> retention_pb2.Erasure:
        deadline = time.monotonic() + timeout
        while True:
            request = retention_pb2.GetErasureRequest(tenant=TENANT, erasure_id=erasure_id)
            erasure = (await self.stub.GetErasure(request)).erasure
            if erasure.status == ES.ERASURE_STATUS_COMPLETED:
                return erasure
            if time.monotonic() > deadline:
                raise RuntimeError(f"erasure {erasure_id} did not complete: {erasure}")
            await asyncio.sleep(every)

    def check_gone(self, subject_id: str, erasure: retention_pb2.Erasure) -> None:
        if erasure.objects_deleted != self.shape.objects:
            raise RuntimeError(f"erasure deleted {erasure.objects_deleted} objects, not {self.shape.objects}")
        if self.store.list_versions(subject_prefix(TENANT, subject_id)):
            raise RuntimeError("objects left after erasure")
        if self.keys.exists(subject_id):
            raise RuntimeError("the key survived the erasure")


def _seconds(erasure: retention_pb2.Erasure, field: str, sent: float) -> float:
    moment = from_timestamp(getattr(erasure, field))
    assert moment is not None
    return moment.timestamp() - sent


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (with 20 samples, p99 is the slowest one)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-int(fraction * 100 * len(ordered)) // 100)))
    return ordered[rank - 1]


async def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, float]:
    shape = Shape(
        photo_bytes=args.photo_kib * 1024,
        model_bytes=args.model_kib * 1024,
        render_bytes=args.render_kib * 1024,
    )
    with tempfile.TemporaryDirectory(prefix="likeness-bench-") as scratch:
        state = Path(scratch)
        say("starting NATS, SeaweedFS S3 and OpenBao")
        infra = start_infra(state / "infra")
        retention = None
        try:
            env = infra.endpoints.as_env()
            settings = CommonSettings(**{k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()})
            grpc_port, metrics_port, health_port = free_port(), free_port(), free_port()
            token_secret = "bench-" + os.urandom(16).hex()
            caller = CallerToken(token_secret)
            caller.act_as(TENANT)  # the bench calls as tenant bench's backend (every scope, tenant:all)
            # Mutual TLS as deployed: retention's certificate for the service, the gateway's for the bench.
            pki = DevCertificateAuthority.create("bench CA")
            tls_dir = pki.issue("retention").write(state / "tls" / "retention")
            service_env = (
                dict(os.environ)
                | env
                | {
                    "LIKENESS_GRPC_PORT": str(grpc_port),
                    "LIKENESS_HEALTH_PORT": str(health_port),
                    "LIKENESS_TLS_DIR": str(tls_dir),
                    "LIKENESS_METRICS_PORT": str(metrics_port),
                    "LIKENESS_HMAC_SECRET": "bench-" + os.urandom(16).hex(),
                    # Retention verifies the caller's token on every call (development: from the environment).
                    "LIKENESS_JWT_DEV_SECRET": token_secret,
                    "LIKENESS_LOG_LEVEL": "WARNING",
                }
            )
            retention = ManagedProcess(
                "retention",
                [sys.executable, "-m", "retention", "serve"],
                state / "retention.log",
                env=service_env,
            )
            retention.start()
            deadline = time.monotonic() + 60
            while check(Probe.GRPC, health_port) is not None:
                if not retention.running or time.monotonic() > deadline:
                    raise RuntimeError(f"retention did not start:\n{retention.log_tail()}")
                await asyncio.sleep(0.2)

            gateway_tls = pki.issue("gateway").material
            async with secure_channel(
                f"127.0.0.1:{grpc_port}", gateway_tls, "retention", interceptors=caller.interceptors()
            ) as channel:
                bench = Bench(settings, retention_pb2_grpc.RetentionServiceStub(channel), shape)
                say(
                    f"each subject: {shape.objects} objects ({shape.photos} photos + {shape.photos} face "
                    f"templates, a LoRA + {shape.checkpoints} checkpoints, {shape.renders} renders), "
                    f"{shape.plaintext_bytes / 2**20:.1f} MiB"
                )
                say(f"single erasures: {args.rounds} subjects, one at a time")
                key_times, purge_times = [], []
                for _ in range(args.rounds):
                    subject_id = await bench.subject_with_data()
                    sent, erasure_id = await bench.erase(subject_id)
                    erasure = await bench.completed(erasure_id)
                    key_times.append(_seconds(erasure, "key_destroyed_at", sent))
                    purge_times.append(_seconds(erasure, "completed_at", sent))
                    bench.check_gone(subject_id, erasure)

                say(f"concurrent erasures: preparing {args.concurrent} subjects")
                subjects = []
                for _ in range(args.concurrent):
                    subjects.append(await bench.subject_with_data())
                began = time.time()
                sent_and_ids = await asyncio.gather(*(bench.erase(s) for s in subjects))
                # Timings come from the records; polling gently keeps the bench from loading the service.
                done = [await bench.completed(erasure_id, every=0.25) for _, erasure_id in sent_and_ids]
                last = max(from_timestamp(e.completed_at) or datetime.now(UTC) for e in done).timestamp()
                wall = last - began
                concurrent_key = [
                    _seconds(e, "key_destroyed_at", s) for (s, _), e in zip(sent_and_ids, done, strict=True)
                ]
                concurrent_purge = [
                    _seconds(e, "completed_at", s) for (s, _), e in zip(sent_and_ids, done, strict=True)
                ]
                for subject_id, erasure in zip(subjects, done, strict=True):
                    bench.check_gone(subject_id, erasure)
                bench.pool.shutdown()
        finally:
            if retention is not None:
                retention.stop()
            infra.stop()

    return {
        "key_p50": statistics.median(key_times),
        "key_p99": percentile(key_times, 0.99),
        "purge_p50": statistics.median(purge_times),
        "purge_p99": percentile(purge_times, 0.99),
        "concurrent_key_p99": percentile(concurrent_key, 0.99),
        "concurrent_purge_p99": percentile(concurrent_purge, 0.99),
        "concurrent_wall": wall,
        "erasures_per_s": args.concurrent / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20, help="single erasures measured one at a time")
    parser.add_argument("--concurrent", type=int, default=50, help="subjects erased at once")
    parser.add_argument("--photo-kib", type=int, default=64)
    parser.add_argument("--model-kib", type=int, default=1024, help="the LoRA and each checkpoint")
    parser.add_argument("--render-kib", type=int, default=64)
    args = parser.parse_args()

    def say(line: str) -> None:
        print(f"[bench] {line}", file=sys.stderr, flush=True)

    r = asyncio.run(run(args, say))

    def verdict(value: float, goal: float) -> str:
        return "ok" if value < goal else "MISSED"

    rows = [
        (
            "DELETE -> key destroyed",
            r["key_p50"],
            r["key_p99"],
            f"< {GOAL_KEY_P99:g} s",
            verdict(r["key_p99"], GOAL_KEY_P99),
        ),
        (
            "DELETE -> purge complete",
            r["purge_p50"],
            r["purge_p99"],
            f"< {GOAL_PURGE_P99:g} s",
            verdict(r["purge_p99"], GOAL_PURGE_P99),
        ),
    ]
    print(f"\nerasure latency, {args.rounds} subjects erased one at a time")
    print(f"{'':<26}{'p50':>10}{'p99':>10}   {'goal (p99)':<12}")
    for label, p50, p99, goal, ok in rows:
        print(f"{label:<26}{p50:>9.3f}s{p99:>9.3f}s   {goal:<12}{ok}")
    print(f"\n{args.concurrent} subjects erased concurrently")
    print(f"{'erasures per second':<34}{r['erasures_per_s']:>8.1f}")
    print(f"{'all completed in':<34}{r['concurrent_wall']:>7.2f}s")
    print(f"{'key destroyed p99 (under load)':<34}{r['concurrent_key_p99']:>7.3f}s")
    print(f"{'purge complete p99 (under load)':<34}{r['concurrent_purge_p99']:>7.3f}s")
    print(
        json.dumps(
            {
                "bench": "erasure",
                "key_destroyed_p99_s": round(r["key_p99"], 4),
                "purge_complete_p99_s": round(r["purge_p99"], 4),
                "erasures_per_s": round(r["erasures_per_s"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
