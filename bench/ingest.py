"""Ingest: photos per second from upload bytes to stored verdict, ours against a naive pipeline.

Both pipelines make the same checks and store the same things; they differ where the time goes:

- naive: the whole photo decoded at full resolution, faces searched on the full image, then confirm,
  quality, landmarks, embedding, crop and re-encode;
- ours (ingest.sanitize): a JPEG decoded straight at the scale face detection needs (libjpeg's DCT
  scaling, 1/2 to 1/8) and again larger only if the face is too small in it; faces searched on a copy
  of about 1 MP. Decoded as the service decodes: in the decoding sandbox (`ingest.sandbox`), a worker
  process under seccomp that hands the pixels back through shared memory. The naive pipeline stays
  unsandboxed (decoded in the service process), so the ratio includes the sandbox's cost.

The sandbox's added cost per photo: the bench photo decoded as ours decodes it (once, at the detection
scale), in this process and through a sandbox worker, alternately, in the same process; the difference
of the medians. Goal: under 15 ms.

What is measured is the whole service path, against real servers started for the run in a temporary
folder (NATS JetStream, SeaweedFS S3, OpenBao, as `likeness_dev.infra.start_infra` starts them for the
tests): a gRPC client streams the upload in 256 KiB chunks to an IngestServicer in this process, which
receives it, sanitizes it, checks it against the subject's photos (S3 listing, one Vault batch decrypt),
encrypts and stores the crop and the face template (Vault data keys, S3), writes the KV record and the
event, and answers the verdict. Each upload goes to a new subject (its Vault key made outside the timing),
so the duplicate check does not refuse the repeats. The photo is a 12 MP (4000x3000) JPEG, as phones take
them; the two pipelines alternate, one photo at a time.

Peak memory: `python -m ingest serve`, the real service, runs as a child process against the same
servers; a 50 MP JPEG (8000x6250, under the 25 MiB and 50 MP limits) is streamed to it, and its peak
resident set (VmHWM) is read from /proc once the verdict is back. Goal: under 600 MB. The decoding
happens in its sandbox's workers, whose own peak is printed beside it.

    .venv/bin/python bench/ingest.py [--rounds 8]

Prints a table, then one JSON line: {"bench": "ingest", "ratio", "verdict_p50_ms", "sandbox_added_p50_ms",
"peak_rss_mb_50mp", "worker_peak_rss_mb_50mp", "goals"}.
"""
# ruff: noqa: E402  (the imports below must come after the sys.path fix)

from __future__ import annotations

import sys
from pathlib import Path

# This file is bench/ingest.py: run as a script, its folder comes first on sys.path, where "ingest" would
# be this file instead of the service's package.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import asyncio
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from ingest.config import IngestSettings
from ingest.crop import aligned_face_crop
from ingest.decode import Decoder, decode_image
from ingest.decoding import start_decoder
from ingest.encode import clean_png
from ingest.faces import FaceAnalyzer, FaceBox, detection_min_side
from ingest.limits import SanitizeLimits
from ingest.phash import perceptual_hash
from ingest.quality import measure_face, quality_problems
from ingest.records import PhotoRecords
from ingest.sanitize import sanitize
from ingest.service import IngestServicer, Sanitizer
from ingest.verdicts import Accepted, Reason, ReasonCode, Rejected, RejectedInput, SanitizeResult, rejected
from likeness import ids
from likeness.grpc_tls import secure_channel, static_server_credentials
from likeness.grpc_user_tokens import user_token_interceptor
from likeness.runtime import Platform
from likeness.v1 import ingest_pb2, ingest_pb2_grpc
from likeness_dev.dev_pki import DevCertificateAuthority
from likeness_dev.infra import Infra, start_infra
from likeness_dev.ports import free_port
from likeness_dev.samples import astronaut
from likeness_dev.tokens import CallerToken

GOAL_RATIO = 3.0
GOAL_RSS_MB = 600
GOAL_SANDBOX_MS = 15.0
TENANT = "bench"
#: The services verify the caller's token on every call: the bench calls as tenant bench's backend.
TOKEN_SECRET = "bench-ingest-token-secret-0123456789abcdef"  # noqa: S105 - a throwaway dev secret
CALLER = CallerToken(TOKEN_SECRET)
CALLER.act_as(TENANT)
#: Mutual TLS as deployed: ingest serves with its certificate, the bench calls with the gateway's.
PKI = DevCertificateAuthority.create("bench CA")
CHUNK = 256 * 1024


# --- the photos ------------------------------------------------------------------------------------


def phone_photo(width: int, height: int, quality: int) -> bytes:
    """A portrait filling the frame's height on a graded backdrop, with a little sensor noise, as JPEG."""
    rng = np.random.default_rng(7)
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    backdrop = (np.array([70, 90, 120], dtype=np.float32) + 60 * ys).repeat(width, axis=1)
    canvas = Image.fromarray(backdrop.astype(np.uint8))
    person = astronaut().resize((height, height), Image.Resampling.LANCZOS)
    canvas.paste(person, ((width - height) // 2, 0))
    pixels = np.asarray(canvas, dtype=np.int16)
    noisy = np.clip(pixels + rng.normal(0, 4.0, (height, width, 1)).astype(np.int16), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# --- the naive pipeline: same checks, full resolution throughout ---------------------------------------


def naive_sanitize(
    data: bytes, limits: SanitizeLimits, analyzer: FaceAnalyzer, decoder: Decoder
) -> SanitizeResult:
    try:
        decoded = decoder(data, limits)  # every pixel, at full resolution (the bench passes decode_image)
        image = decoded.image
        face = _naive_find_subject(analyzer, image, limits)
    except RejectedInput as rejection:
        return rejected(rejection.code, limits)
    photo_hash = perceptual_hash(image)
    quality = measure_face(image, face)
    scores = {"face_score": round(face.score, 3), "face_fraction": round(face.side / min(image.size), 3)}
    scores |= quality.scores()
    problems = quality_problems(quality, limits)
    if problems:
        return Rejected(reasons=[Reason.of(code, limits) for code in problems], scores=scores)
    description = analyzer.describe(image, face)
    crop = aligned_face_crop(
        image, description.landmarks, size=limits.crop_size, face_fraction=limits.crop_face_fraction
    )
    return Accepted(
        png=clean_png(crop),
        width=crop.width,
        height=crop.height,
        face_box=face,
        face_score=face.score,
        face_fraction=face.side / min(image.size),
        embedding=description.embedding,
        perceptual_hash=photo_hash,
        source_format=decoded.source_format.value,
        source_width=image.width,
        source_height=image.height,
        scores=scores,
    )


def _naive_find_subject(analyzer: FaceAnalyzer, image: Image.Image, limits: SanitizeLimits) -> FaceBox:
    # HOG over the full image (no reduced copy), which finds faces of every size in one pass.
    proposals = analyzer.detect(
        image,
        min_face_fraction=0.0,
        min_score=limits.min_proposal_score,
        max_pixels=image.width * image.height,
    )
    shorter = min(image.size)
    large = [f for f in proposals if f.side / shorter >= limits.min_face_fraction][
        : limits.max_face_proposals
    ]
    confirmed: list[FaceBox] = []
    for face in large:  # the same rule as ours: weak proposals beside a confirmed face are not looked at
        if confirmed and face.score < limits.min_second_face_score:
            continue
        if analyzer.confirm(image, face, min_confidence=limits.min_face_confidence):
            confirmed.append(face)
    if len(confirmed) > 1:
        raise RejectedInput(ReasonCode.MULTIPLE_FACES)
    if confirmed:
        return confirmed[0]
    if any(analyzer.confirm(image, f, min_confidence=limits.min_face_confidence) for f in proposals[:6]):
        raise RejectedInput(ReasonCode.FACE_TOO_SMALL)
    raise RejectedInput(ReasonCode.NO_FACE)


# --- the service, in this process and as a child process ------------------------------------------------


def _requests(subject_id: str, data: bytes) -> AsyncIterator[ingest_pb2.SanitizePhotoRequest]:
    async def generate() -> AsyncIterator[ingest_pb2.SanitizePhotoRequest]:
        header = ingest_pb2.PhotoUploadHeader(tenant=TENANT, subject_id=subject_id, content_type="image/jpeg")
        yield ingest_pb2.SanitizePhotoRequest(header=header)
        for start in range(0, len(data), CHUNK):
            yield ingest_pb2.SanitizePhotoRequest(chunk=data[start : start + CHUNK])

    return generate()


async def _upload(
    stub: ingest_pb2_grpc.IngestServiceStub, platform: Platform, data: bytes
) -> tuple[float, ingest_pb2.Photo]:
    subject_id = ids.new_id("sub")
    await asyncio.to_thread(platform.keys.create, subject_id)
    started = time.perf_counter()
    response = await stub.SanitizePhoto(_requests(subject_id, data), timeout=300)
    return time.perf_counter() - started, response.photo


def _channel(port: int) -> grpc.aio.Channel:
    """A channel to ingest on loopback with the gateway's certificate and the caller's token."""
    gateway_tls = PKI.issue("gateway").material
    return secure_channel(f"127.0.0.1:{port}", gateway_tls, "ingest", interceptors=CALLER.interceptors())


class InProcess:
    """An IngestServicer with the given pipeline behind a real gRPC server on loopback."""

    def __init__(
        self,
        platform: Platform,
        settings: IngestSettings,
        analyzer: FaceAnalyzer,
        sanitizer: Sanitizer,
        decoder: Decoder,
    ):
        self.platform, self.settings, self.analyzer, self.sanitizer = platform, settings, analyzer, sanitizer
        self.decoder = decoder

    async def __aenter__(self) -> ingest_pb2_grpc.IngestServiceStub:
        records = await PhotoRecords.open(self.platform.bus)
        servicer = IngestServicer(
            self.platform, records, self.settings, self.decoder, self.analyzer, self.sanitizer
        )
        self.server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
            interceptors=[user_token_interceptor(self.settings)],  # verifies the caller's token, as deployed
        )
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, self.server)
        port = free_port()
        self.server.add_secure_port(
            f"127.0.0.1:{port}", static_server_credentials(PKI.issue("ingest").material)
        )
        await self.server.start()
        self.channel = _channel(port)
        return ingest_pb2_grpc.IngestServiceStub(self.channel)

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()
        await self.server.stop(0)


def _peak_rss_mb(pid: int) -> tuple[float, float]:
    """(VmHWM, VmRSS) of a process in MB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def _decoding_workers(pid: int) -> list[int]:
    """The decoding sandbox's workers of the service process `pid`."""
    workers = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and b"ingest.sandbox.worker" in argv:
            workers.append(int(entry.name))
    return workers


async def _serve_child_and_upload(
    infra: Infra, platform: Platform, data: bytes
) -> tuple[float, float, float, str]:
    """Runs `python -m ingest serve` and streams ``data`` to it: (the service's peak MB before the upload,
    after it, its decoding workers' highest peak MB, verdict)."""
    grpc_port = free_port()
    tls_dir = PKI.issue("ingest").write(Path(tempfile.mkdtemp(prefix="likeness-bench-tls-")))
    env = {
        **os.environ,
        **infra.endpoints.as_env(),
        "LIKENESS_GRPC_PORT": str(grpc_port),
        "LIKENESS_HEALTH_PORT": str(free_port()),
        "LIKENESS_TLS_DIR": str(tls_dir),
        "LIKENESS_METRICS_PORT": str(free_port(also_free=[grpc_port])),
        "LIKENESS_LOG_LEVEL": "WARNING",
        "LIKENESS_JWT_DEV_SECRET": TOKEN_SECRET,  # development: a secret may come from the environment
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ingest", "serve", env=env, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        channel = _channel(grpc_port)
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 120
        while True:
            try:
                status = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if status.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline or child.returncode is not None:
                raise RuntimeError("the ingest service did not start")
            await asyncio.sleep(0.5)
        before, _ = _peak_rss_mb(child.pid)
        _, photo = await _upload(ingest_pb2_grpc.IngestServiceStub(channel), platform, data)
        after, _ = _peak_rss_mb(child.pid)
        workers = max(_peak_rss_mb(worker)[0] for worker in _decoding_workers(child.pid))
        await channel.close()
        verdict = "accepted" if photo.status == ingest_pb2.PHOTO_STATUS_ACCEPTED else photo.reasons[0].code
        return before, after, workers, verdict
    finally:
        child.terminate()
        await asyncio.wait_for(child.wait(), timeout=30)
        shutil.rmtree(tls_dir, ignore_errors=True)


# --- the sandbox's own cost ----------------------------------------------------------------------------


def sandbox_cost(decoder: Decoder, data: bytes, limits: SanitizeLimits, rounds: int) -> tuple[float, float]:
    """(in-process p50 s, sandboxed p50 s) of the decode ours makes of `data`, alternately, side by side."""
    side = detection_min_side(limits.min_face_fraction)
    timings: dict[str, list[float]] = {"in_process": [], "sandboxed": []}
    for _ in range(rounds):
        for name, decode in (("in_process", decode_image), ("sandboxed", decoder)):
            started = time.perf_counter()
            decode(data, limits, min_side=side)
            timings[name].append(time.perf_counter() - started)
    return statistics.median(timings["in_process"]), statistics.median(timings["sandboxed"])


# --- the run ---------------------------------------------------------------------------------------------


async def run(rounds: int) -> None:
    photo_12mp = phone_photo(4000, 3000, quality=90)
    photo_50mp = phone_photo(8000, 6250, quality=85)
    with tempfile.TemporaryDirectory(prefix="likeness-bench-ingest-") as state:
        infra = start_infra(Path(state))
        try:
            settings = IngestSettings.model_validate(
                {k.removeprefix("LIKENESS_").lower(): v for k, v in infra.endpoints.as_env().items()}
                | {"jwt_dev_secret": TOKEN_SECRET}
            )
            if len(photo_50mp) > settings.max_upload_bytes:
                raise SystemExit(f"the 50 MP photo is {len(photo_50mp)} bytes, over the upload limit")
            platform = await Platform.connect(settings, "bench-ingest")
            analyzer = FaceAnalyzer()
            analyzer.warm_up()
            timings: dict[str, list[float]] = {"naive": [], "ours": []}
            # Ours decodes in the sandbox, as the service does; the naive baseline in this process.
            decoder, stop_decoding = start_decoder(settings)
            try:
                async with (
                    InProcess(platform, settings, analyzer, naive_sanitize, decode_image) as naive,
                    InProcess(platform, settings, analyzer, sanitize, decoder) as ours,
                ):
                    stubs = {"naive": naive, "ours": ours}
                    for name, stub in stubs.items():  # warm-up: first calls open connections, fill caches
                        _, photo = await _upload(stub, platform, photo_12mp)
                        if photo.status != ingest_pb2.PHOTO_STATUS_ACCEPTED:
                            raise SystemExit(f"{name} rejected the benchmark photo: {list(photo.reasons)}")
                    for _ in range(rounds):
                        for name, stub in stubs.items():
                            seconds, photo = await _upload(stub, platform, photo_12mp)
                            assert photo.status == ingest_pb2.PHOTO_STATUS_ACCEPTED
                            timings[name].append(seconds)
                in_process, sandboxed = await asyncio.to_thread(
                    sandbox_cost, decoder, photo_12mp, settings.limits(), max(15, 3 * rounds)
                )
            finally:
                stop_decoding()
            before, peak, worker_peak, verdict_50mp = await _serve_child_and_upload(
                infra, platform, photo_50mp
            )
            await platform.close()
        finally:
            infra.stop()

    # Photos per second at the median time to verdict: one slow upload on a busy machine (this measures
    # wall time) moves a mean far more than it moves what a user of either pipeline sees.
    rates = {name: 1 / statistics.median(values) for name, values in timings.items()}
    ratio = rates["ours"] / rates["naive"]
    p50_ms = statistics.median(timings["ours"]) * 1000
    print(
        f"ingest: 12 MP JPEG (4000x3000, {len(photo_12mp) / 1e6:.1f} MB), {rounds} uploads per pipeline, "
        "upload bytes -> stored verdict through gRPC, real NATS/S3/Vault"
    )
    print(f"{'pipeline':<58} {'p50 ms':>8} {'min ms':>8} {'max ms':>8} {'photos/s':>9}")
    labels = {
        "naive": "naive: full-resolution decode, detection on the full image",
        "ours": "ours: DCT-scaled decode (sandboxed), detection on ~1 MP",
    }
    for name, values in timings.items():
        print(
            f"{labels[name]:<58} {statistics.median(values) * 1000:8.0f} {min(values) * 1000:8.0f} "
            f"{max(values) * 1000:8.0f} {rates[name]:9.2f}"
        )
    print(f"ratio (photos/s at the median, ours over naive): {ratio:.2f} (goal >= {GOAL_RATIO:g})")
    added_ms = (sandboxed - in_process) * 1000
    print(
        f"decoding sandbox, the same decode of this photo (p50): in this process {in_process * 1000:.1f} ms, "
        f"through a worker {sandboxed * 1000:.1f} ms; added per photo {added_ms:.1f} ms "
        f"(goal < {GOAL_SANDBOX_MS:g} ms)"
    )
    print(
        f"50 MP JPEG (8000x6250, {len(photo_50mp) / 1e6:.1f} MB) into `python -m ingest serve`: "
        f"{verdict_50mp}; peak RSS {peak:.0f} MB ({before:.0f} MB before the upload; "
        f"goal < {GOAL_RSS_MB} MB); its decoding workers' peak {worker_peak:.0f} MB"
    )
    print(
        json.dumps(
            {
                "bench": "ingest",
                "ratio": round(ratio, 2),
                "verdict_p50_ms": round(p50_ms, 1),
                "sandbox_added_p50_ms": round(added_ms, 1),
                "peak_rss_mb_50mp": round(peak, 1),
                "worker_peak_rss_mb_50mp": round(worker_peak, 1),
                "goals": {
                    "ratio": GOAL_RATIO,
                    "sandbox_added_p50_ms": GOAL_SANDBOX_MS,
                    "peak_rss_mb_50mp": GOAL_RSS_MB,
                },
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=8, help="timed uploads per pipeline (after one warm-up)"
    )
    args = parser.parse_args()
    asyncio.run(run(args.rounds))


if __name__ == "__main__":
    main()
