"""The decoding sandbox: what a decoder exploit gets inside a worker (nothing), and how the pool survives it.

A planted decoder (`sandbox_hostile_worker.py`, test-only) runs each attack inside a real, fully confined
worker, started by the real pool with the production worker's own setup; the same attack run in this
process succeeds, so a refusal in the sandbox is the sandbox's doing, not a broken attack. Attacks that
the seccomp filter answers with death must end the worker by SIGSYS (counted as `filter_violation`), not
by some other crash.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import io
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image
from prometheus_client import REGISTRY
from pydantic import ValidationError

from ingest.config import IngestSettings
from ingest.decode import decode_image
from ingest.limits import SanitizeLimits
from ingest.reasons import ReasonCode, RejectedInput
from ingest.sandbox.pool import DecoderPool
from ingest.sandbox.protocol import (
    DECODE_REASONS,
    FORMAT_NAMES,
    Decoded,
    Job,
    MalformedReply,
    Refused,
    SharedLayout,
    WorkerArguments,
    parse_result,
)
from ingest.sandbox.worker_process import SandboxUnavailable, WorkerLimits, confinement_problems

HOSTILE = Path(__file__).with_name("sandbox_hostile_worker.py")
MEMORY_LIMIT = 1024 * 1024 * 1024
TIMEOUT = 4.0
Encode = Callable[..., bytes]


def _load_hostile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sandbox_hostile_worker", HOSTILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hostile = _load_hostile()


def _pool(
    limits: SanitizeLimits,
    *entry: str,
    timeout_seconds: float = TIMEOUT,
    jobs: int = 100,
    cpu_seconds_per_job: int = 10,
) -> DecoderPool:
    """One worker, the hostile one unless `entry` names another."""
    worker_limits = WorkerLimits(timeout_seconds, jobs, MEMORY_LIMIT, cpu_seconds_per_job)
    return DecoderPool(1, limits.max_bytes, limits.max_pixels, worker_limits, entry=entry or (str(HOSTILE),))


@pytest.fixture(scope="module")
def planted(limits: SanitizeLimits) -> Iterator[DecoderPool]:
    """A pool of one worker whose decoder is the hostile one."""
    pool = _pool(limits)
    pool.start()
    yield pool
    pool.close()


def _ended(reason: str) -> float:
    return REGISTRY.get_sample_value("likeness_ingest_decoder_workers_ended_total", {"reason": reason}) or 0.0


ATTACK: bytes = hostile.ATTACK


def _payload(name: str, argument: object = "") -> bytes:
    return ATTACK + f"{name} {argument}".encode()


def in_sandbox(pool: DecoderPool, limits: SanitizeLimits, name: str, argument: object = "") -> str:
    """What the attack reported from inside the sandbox (the worker survived it)."""
    decoded = pool(_payload(name, argument), limits)
    return decoded.image.tobytes().rstrip(b"\0").decode()


def killed_by(pool: DecoderPool, limits: SanitizeLimits, name: str, argument: object = "") -> str:
    """The attack must end its worker, and its photo be `corrupt_image`: returns why the worker ended."""
    before = {reason: _ended(reason) for reason in _REASONS}
    with pytest.raises(RejectedInput) as caught:
        pool(_payload(name, argument), limits)
    assert caught.value.code is ReasonCode.CORRUPT_IMAGE
    [reason] = [reason for reason in _REASONS if _ended(reason) == before[reason] + 1]
    return reason


_REASONS = ("timed_out", "crashed", "filter_violation", "out_of_cpu", "killed", "exited", "malformed_reply")


def _denied_eperm(outcome: str) -> None:
    assert outcome.startswith("denied: "), outcome
    assert f"errno={errno.EPERM}" in outcome, outcome


def _photo(encode: Encode) -> bytes:
    return encode(Image.new("RGB", (400, 300), (30, 160, 90)), "PNG")


def _decodes_normally(pool: DecoderPool, limits: SanitizeLimits, encode: Encode) -> None:
    data = _photo(encode)
    assert pool(data, limits).image.tobytes() == decode_image(data, limits).image.tobytes()


# --- how a worker is confined ----------------------------------------------------------------------------


def test_workers_run_confined_as_the_kernel_reports_it(decoder_pool: DecoderPool) -> None:
    pids = decoder_pool.worker_pids()
    assert len(pids) == 2
    for pid in pids:
        assert confinement_problems(pid) == []
        status = dict(
            line.split(":\t", 1)
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if ":\t" in line
        )
        assert status["Seccomp"].strip() == "2"  # filter mode
        assert status["NoNewPrivs"].strip() == "1"
        assert status["CapEff"].strip() == status["CapPrm"].strip() == "0" * 16
        assert int(status["PPid"]) == os.getpid()
        limits = Path(f"/proc/{pid}/limits").read_text()
        assert _limit(limits, "Max core file size") == "0"
        assert _limit(limits, "Max file size") == "0"
        assert _limit(limits, "Max open files") == "32"
        assert _limit(limits, "Max address space") == str(2048 * 1024 * 1024)
        assert _limit(limits, "Max cpu time") != "unlimited"
        # A fresh interpreter of the production module, isolated, with an environment of no secrets.
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert argv[:5] == [sys.executable.encode(), b"-I", b"-B", b"-m", b"ingest.sandbox.worker"]
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert {entry.split(b"=")[0] for entry in environment if entry} == {
            b"OPENBLAS_NUM_THREADS",
            b"OMP_NUM_THREADS",
            b"MALLOC_ARENA_MAX",
            b"MALLOC_MMAP_THRESHOLD_",
            b"MALLOC_TRIM_THRESHOLD_",
        }
        # No descriptor but /dev/null, its channel and its shared memory.
        targets = sorted(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
        assert targets[:3] == ["/dev/null"] * 3
        assert len(targets) == 5
        assert targets[3].startswith("/memfd:likeness-decode")
        assert targets[4].startswith("socket:")
        # Only the decoders are loaded: no face models, no dlib.
        assert "dlib" not in Path(f"/proc/{pid}/maps").read_text()


def _limit(limits: str, name: str) -> str:
    [line] = [line for line in limits.splitlines() if line.startswith(name)]
    return line[len(name) :].split()[0]


def test_the_pool_refuses_a_worker_that_is_not_confined(limits: SanitizeLimits) -> None:
    # It says it is ready but never confined itself: /proc shows it, and the pool does not start.
    with pytest.raises(SandboxUnavailable, match="Seccomp is 0, not 2"):
        _pool(limits, str(HOSTILE), "unconfined").start()
    # Its seccomp filter cannot be loaded (a kernel without seccomp): the same, fail closed.
    with pytest.raises(SandboxUnavailable, match="seccomp failed"):
        _pool(limits, str(HOSTILE), "no-seccomp").start()


def test_the_service_process_makes_itself_non_dumpable(tmp_path: Path) -> None:
    """Another process of the same user, without capabilities (a worker that escaped its filter), may not
    read the service's environment or memory once it has made itself non-dumpable; before, it may."""
    # Both without capabilities: a process with more of them than its prober may never be read anyway.
    script = (
        "import os, subprocess, sys\n"
        "from ingest.decoding import protect_service_process\n"
        "from ingest.sandbox.privileges import drop_capabilities, is_dumpable\n"
        "drop_capabilities()\n"
        "def probe():\n"
        "    code = ('from ingest.sandbox.privileges import drop_capabilities\\n'\n"
        "            'drop_capabilities()\\n'\n"
        '            f\'open("/proc/{os.getpid()}/environ", "rb").read()\')\n'
        "    return subprocess.run([sys.executable, '-c', code], capture_output=True).returncode\n"
        "print(is_dumpable(), probe())\n"
        "protect_service_process()\n"
        "print(is_dumpable(), probe())\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert completed.stdout.split() == ["True", "0", "False", "1"], completed.stderr


#: Settings production accepts (as libs/likeness/tests/test_config.py's), for ingest.
PRODUCTION = {
    "env": "production",
    "nats_url": "tls://nats.example:4222",
    "s3_endpoint": "https://s3.example",
    "vault_addr": "https://vault.example:8200",
    "vault_auth": "kubernetes",
    "s3_secret_key": "x" * 40,
    "jwks_url": "https://idp.example/.well-known/jwks.json",
    "jwt_issuer": "https://idp.example/",
    "jwt_audience": "https://api.example/",
    "otlp_endpoint": "https://otel.example:4317",
    "audit_pseudonym_secret": "p" * 40,  # the audit trail's pseudonym key (issue 16)
}


def test_production_refuses_to_decode_outside_the_sandbox() -> None:
    assert IngestSettings.model_validate(PRODUCTION).decode_sandbox
    with pytest.raises(ValidationError, match="LIKENESS_DECODE_SANDBOX=false"):
        IngestSettings.model_validate({**PRODUCTION, "decode_sandbox": False})
    assert not IngestSettings.model_validate({"env": "development", "decode_sandbox": False}).decode_sandbox


# --- what a planted decoder gets ---------------------------------------------------------------------------


def test_a_planted_decoder_cannot_read_the_services_secret_files_or_environment(
    planted: DecoderPool, limits: SanitizeLimits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    token = b"s.planted-vault-token-0123456789"
    (secrets / "vault_token").write_bytes(token)
    monkeypatch.setenv("LIKENESS_SECRETS_DIR", str(secrets))
    for path in (secrets / "vault_token", Path(f"/proc/{os.getpid()}/environ")):
        here = hostile.attack("read", path)
        assert here.startswith("done: "), "the attack reads the file where nothing stops it"
        assert len(here) > 20
        outcome = in_sandbox(planted, limits, "read", path)
        _denied_eperm(outcome)
        assert token.hex() not in outcome
    assert token.hex() in hostile.attack("read", secrets / "vault_token")
    # Its own environment holds nothing of the service's.
    environment = in_sandbox(planted, limits, "environ").removeprefix("done: ").split(",")
    assert not [name for name in environment if name.startswith("LIKENESS")], environment
    assert "LIKENESS_SECRETS_DIR" in os.environ


def test_a_planted_decoder_cannot_read_or_trace_the_services_memory(
    planted: DecoderPool, limits: SanitizeLimits
) -> None:
    secret = ctypes.create_string_buffer(b"data-key-of-a-subject-0123456789")
    where = f"{os.getpid()}:{ctypes.addressof(secret)}:{len(secret.raw)}"
    # Where nothing stops it, the attack reads the bytes through /proc/<pid>/mem and process_vm_readv.
    assert secret.raw.hex() in hostile.attack("read-memory", where)
    assert secret.raw.hex() in hostile.attack("vm-read", where)
    _denied_eperm(in_sandbox(planted, limits, "read-memory", where))
    assert killed_by(planted, limits, "vm-read", where) == "filter_violation"
    assert killed_by(planted, limits, "ptrace", os.getpid()) == "filter_violation"


def test_a_planted_decoder_cannot_open_a_socket_run_a_program_or_start_a_process(
    planted: DecoderPool, limits: SanitizeLimits
) -> None:
    assert hostile.attack("socket", 9) == "done: made a socket"
    for attack in ("socket", "exec", "fork"):
        assert killed_by(planted, limits, attack, 9) == "filter_violation", attack


def test_a_planted_decoder_cannot_write_a_file(
    planted: DecoderPool, limits: SanitizeLimits, tmp_path: Path
) -> None:
    assert hostile.attack("write", tmp_path / "here") == "done: wrote"
    target = tmp_path / "from-the-sandbox"
    _denied_eperm(in_sandbox(planted, limits, "write", target))
    assert not target.exists()


def test_a_planted_decoder_cannot_signal_the_service_or_raise_its_own_limits(
    planted: DecoderPool, limits: SanitizeLimits
) -> None:
    assert hostile.attack("signal", os.getpid()) == "done: may signal it"
    _denied_eperm(in_sandbox(planted, limits, "signal", os.getpid()))
    _denied_eperm(in_sandbox(planted, limits, "raise-memory-limit"))


def test_allocating_past_the_memory_limit_fails_inside_the_sandbox(
    planted: DecoderPool, limits: SanitizeLimits, encode: Encode
) -> None:
    assert in_sandbox(planted, limits, "allocate", 64 * 1024 * 1024) == f"done: allocated {64 * 1024 * 1024}"
    assert in_sandbox(planted, limits, "allocate", MEMORY_LIMIT).startswith("denied: MemoryError")
    _decodes_normally(planted, limits, encode)


# --- crashes, hangs and lies --------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", ["segfault", "sigsegv"])
def test_a_crashing_decoder_is_a_corrupt_image_and_the_next_photo_decodes(
    attack: str, planted: DecoderPool, limits: SanitizeLimits, encode: Encode
) -> None:
    [before] = planted.worker_pids()
    assert killed_by(planted, limits, attack) == "crashed"
    _decodes_normally(planted, limits, encode)
    assert planted.worker_pids() != [before], "a new worker decoded it"


@pytest.mark.parametrize("attack", ["spin", "sleep"])
def test_a_hung_decoder_is_killed_at_the_timeout(
    attack: str, planted: DecoderPool, limits: SanitizeLimits, encode: Encode
) -> None:
    started = time.monotonic()
    assert killed_by(planted, limits, attack) == "timed_out"
    elapsed = time.monotonic() - started
    assert TIMEOUT <= elapsed < TIMEOUT + 20, elapsed
    _decodes_normally(planted, limits, encode)


def test_a_decoder_past_its_cpu_budget_is_killed(limits: SanitizeLimits, encode: Encode) -> None:
    pool = _pool(limits, timeout_seconds=120.0, cpu_seconds_per_job=1)
    pool.start()
    try:
        started = time.monotonic()
        assert killed_by(pool, limits, "spin") == "out_of_cpu"
        assert time.monotonic() - started < 20, "by its CPU limit of 1 s, long before the timeout"
        _decodes_normally(pool, limits, encode)
    finally:
        pool.close()


@pytest.mark.parametrize("attack", ["lie", "as-png", "garbage"])
def test_a_worker_that_answers_out_of_protocol_is_dropped(
    attack: str, planted: DecoderPool, limits: SanitizeLimits, encode: Encode
) -> None:
    assert killed_by(planted, limits, attack) == "malformed_reply"
    _decodes_normally(planted, limits, encode)


def test_workers_are_recycled_after_their_jobs(limits: SanitizeLimits, encode: Encode) -> None:
    pool = _pool(limits, "-m", "ingest.sandbox.worker", jobs=3)
    pool.start()
    try:
        [first] = pool.worker_pids()
        recycled = _ended("recycled")
        for _ in range(3):
            assert pool.worker_pids() == [first]
            _decodes_normally(pool, limits, encode)
        assert _ended("recycled") == recycled + 1
        _decodes_normally(pool, limits, encode)
        [second] = pool.worker_pids()
        assert second != first
        deadline = time.monotonic() + 10
        while _alive(first) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(first), "the recycled worker is gone"
    finally:
        pool.close()
    assert not _alive(second)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# --- the sandbox decodes what decode_image decodes ----------------------------------------------------------


def _quadrants(size: tuple[int, int] = (1200, 900)) -> Image.Image:
    image = Image.new("RGB", size, (255, 255, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1] // 2))
    image.paste((0, 200, 0), (size[0] // 2, 0, size[0], size[1] // 2))
    return image


def _samples(
    encode: Encode, swapped_icc_profile: bytes, portrait_jpeg: bytes, bomb: Callable[[int, int], bytes]
) -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x0112] = 6
    picture = _quadrants()
    mpo = io.BytesIO()
    picture.save(mpo, format="MPO", save_all=True, append_images=[picture.rotate(180)])
    return {
        "jpeg": portrait_jpeg,
        "jpeg rotated": encode(picture, "JPEG", exif=exif.tobytes()),
        "jpeg icc": encode(picture, "JPEG", icc_profile=swapped_icc_profile),
        "jpeg cmyk": encode(picture.convert("CMYK"), "JPEG"),
        "mpo": mpo.getvalue(),
        "png rgba": encode(picture.convert("RGBA"), "PNG"),
        "png 16-bit": encode(Image.new("I;16", (400, 300), 40000), "PNG"),
        "png palette": encode(picture.convert("P"), "PNG", transparency=0),
        "png icc": encode(picture, "PNG", icc_profile=swapped_icc_profile),
        "webp": encode(picture, "WEBP", quality=80),
        "webp lossless": encode(picture.convert("RGBA"), "WEBP", lossless=True),
        "heic": encode(picture, "HEIF", quality=60, exif=exif.tobytes()),
        "truncated jpeg": portrait_jpeg[: len(portrait_jpeg) // 2],
        "png bomb": bomb(20000, 20000),
        "png over max_pixels": bomb(9000, 9000),
        "too small": encode(Image.new("RGB", (200, 200)), "PNG"),
        "animated png": _animation(picture, "PNG"),
        "animated webp": _animation(picture, "WEBP"),
        "gif": encode(picture, "GIF"),
    }


def _animation(picture: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=image_format, save_all=True, append_images=[picture.rotate(180)])
    return buffer.getvalue()


def _outcome(decode: Callable[..., Any], data: bytes, limits: SanitizeLimits, min_side: int | None) -> Any:
    try:
        decoded = decode(data, limits, min_side=min_side)
    except RejectedInput as rejection:
        return rejection.code
    return (decoded.source_format, decoded.source_size, decoded.image.size, decoded.image.tobytes())


@pytest.mark.parametrize("min_side", [None, 300])
def test_the_sandbox_decodes_exactly_what_decode_image_decodes(
    min_side: int | None,
    decoder_pool: DecoderPool,
    limits: SanitizeLimits,
    encode: Encode,
    swapped_icc_profile: bytes,
    portrait_jpeg: bytes,
    png_with_header: Callable[[int, int], bytes],
) -> None:
    outcomes = set()
    samples = _samples(encode, swapped_icc_profile, portrait_jpeg, png_with_header)
    for name, data in samples.items():
        expected = _outcome(decode_image, data, limits, min_side)
        assert _outcome(decoder_pool, data, limits, min_side) == expected, name
        outcomes.add(expected if isinstance(expected, ReasonCode) else "decoded")
    assert outcomes == {
        "decoded",
        ReasonCode.CORRUPT_IMAGE,
        ReasonCode.IMAGE_TOO_LARGE,
        ReasonCode.IMAGE_TOO_SMALL,
        ReasonCode.UNSUPPORTED_FORMAT,
    }


def test_limits_before_decoding_still_come_first(decoder_pool: DecoderPool, limits: SanitizeLimits) -> None:
    with pytest.raises(RejectedInput) as caught:
        decoder_pool(b"\xff\xd8\xff" + b"\0" * limits.max_bytes, limits)
    assert caught.value.code is ReasonCode.FILE_TOO_LARGE
    with pytest.raises(RejectedInput) as caught:
        decoder_pool(b"GIF89a" + b"\0" * 100, limits)
    assert caught.value.code is ReasonCode.UNSUPPORTED_FORMAT


# --- the protocol, parsed strictly --------------------------------------------------------------------------

LAYOUT = SharedLayout.for_limits(1 << 20, 1 << 20)
_RESULT = struct.Struct(">4sQBBBIIII")  # as ingest.sandbox.protocol lays a result out
JOB = Job(7, 100, 1 << 20, 1 << 20, 256, None)


def _result_payload(result: Decoded | Refused) -> bytes:
    return result.pack()[4:]


def test_a_well_formed_result_is_read_back() -> None:
    decoded = Decoded(7, "PNG", (300, 256), (600, 512))
    assert parse_result(_result_payload(decoded), JOB, LAYOUT) == decoded
    refused = Refused(7, ReasonCode.IMAGE_TOO_SMALL)
    assert parse_result(_result_payload(refused), JOB, LAYOUT) == refused
    assert FORMAT_NAMES == ("JPEG", "PNG", "WEBP", "HEIF")
    assert ReasonCode.NO_FACE not in DECODE_REASONS


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_result_payload(Decoded(8, "PNG", (300, 256), (600, 512))), id="another job"),
        pytest.param(_result_payload(Decoded(7, "PNG", (700, 256), (600, 512))), id="larger than its source"),
        pytest.param(_result_payload(Decoded(7, "PNG", (300, 256), (2000, 1000))), id="over max_pixels"),
        pytest.param(_result_payload(Decoded(7, "PNG", (100, 100), (200, 200))), id="under min_side"),
        pytest.param(_result_payload(Decoded(7, "PNG", (300, 256), (600, 512)))[:-1], id="short"),
        pytest.param(_result_payload(Decoded(7, "PNG", (300, 256), (600, 512))) + b"\0", id="long"),
        pytest.param(_RESULT.pack(b"LKR1", 7, 1, 9, 0, 0, 0, 0, 0), id="unknown reason"),
        pytest.param(_RESULT.pack(b"LKR1", 7, 1, 2, 0, 1, 1, 1, 1), id="a refusal with pixels"),
        pytest.param(_RESULT.pack(b"LKR1", 7, 2, 0, 0, 300, 256, 600, 512), id="unknown outcome"),
        pytest.param(_RESULT.pack(b"LKR1", 7, 0, 0, 4, 300, 256, 600, 512), id="unknown format"),
        pytest.param(_RESULT.pack(b"LKR1", 7, 0, 0, 1, 0, 256, 600, 512), id="no pixels"),
        pytest.param(_RESULT.pack(b"XXXX", 7, 1, 2, 0, 0, 0, 0, 0), id="bad magic"),
    ],
)
def test_anything_else_from_a_worker_is_malformed(payload: bytes) -> None:
    with pytest.raises(MalformedReply):
        parse_result(payload, JOB, LAYOUT)


def test_a_frame_needing_more_pixels_than_the_shared_memory_holds_is_malformed() -> None:
    small = SharedLayout.for_limits(1 << 20, 1000 * 1000)
    job = Job(7, 100, 1 << 20, 2000 * 2000, 256, None)
    with pytest.raises(MalformedReply):
        parse_result(_result_payload(Decoded(7, "JPEG", (1500, 1500), (1500, 1500))), job, small)


def test_the_worker_takes_only_numbers_on_its_command_line() -> None:
    arguments = WorkerArguments(3, 4, 10, 4096, 30, 1 << 30, 10, 25, 1)
    assert WorkerArguments.from_argv(arguments.to_argv()) == arguments
    for argv in (arguments.to_argv()[:-1], [*arguments.to_argv(), "5"], ["x", *arguments.to_argv()[1:]]):
        with pytest.raises(SystemExit):
            WorkerArguments.from_argv(argv)
