"""One decoding worker, seen from the service: start it, check it is confined, run a job, end it.

The worker is a new program (`subprocess.Popen` execs at once: nothing of this process's memory, which
holds Vault tokens and data keys, reaches it), with an environment of three thread and allocator
settings, / as its directory, /dev/null as stdin, stdout and stderr (what a compromised worker writes
there must not reach the logs), and exactly two more descriptors: its end of the channel and the shared
memory. Its first message says whether it confined itself; the service then reads /proc/<pid>/status
and uses the worker only if the kernel agrees: seccomp in filter mode, no-new-privileges, no
capabilities. Everything it sends after is read with a deadline, in fixed sizes, and checked.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ingest.decode import DecodedImage
from ingest.formats import ImageFormat
from ingest.limits import SanitizeLimits
from ingest.reasons import RejectedInput
from ingest.sandbox.protocol import (
    FRAME_HEADER,
    Decoded,
    Job,
    MalformedReply,
    Refused,
    SharedLayout,
    WorkerArguments,
    parse_ready,
    parse_result,
    ready_size,
    result_size,
)
from ingest.sandbox.shared_memory import SharedMemory

log = logging.getLogger(__name__)

#: The production worker: `python -m ingest.sandbox.worker`.
WORKER_ENTRY: tuple[str, ...] = ("-m", "ingest.sandbox.worker")
#: -I: isolated (no PYTHON* variables, no user site, no script directory or cwd on sys.path: the venv's
#: site-packages, editable installs included, still resolve); -B: no .pyc written (and none could be).
_INTERPRETER_FLAGS = ("-I", "-B")
#: One thread for BLAS and OpenMP, two malloc arenas: a small, predictable address space under RLIMIT_AS.
#: Fixed malloc thresholds (blocks up to 32 MB from the heap, up to 128 MB of freed heap kept for the next
#: job): glibc's adaptive ones start low in a fresh process and gave every frame's memory back to the
#: kernel after each job, and faulting it in again cost more than all the rest of the sandbox (~20 ms a
#: photo). Nothing here is a secret: the worker's whole environment is this.
_ENVIRONMENT = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_MMAP_THRESHOLD_": "33554432",
    "MALLOC_TRIM_THRESHOLD_": "134217728",
}
#: How long a worker may take to start and confine itself (imports and warm-up: ~0.2 s on a quiet core).
START_SECONDS = 60.0
_job_ids = itertools.count(1)


class SandboxUnavailable(Exception):
    """A worker could not be started fully confined: the service must not decode (fail closed)."""


class WorkerFailed(Exception):
    """The worker crashed, hung, or broke the protocol during a job; it is gone, and the job's photo is
    taken as corrupt. `reason` is one of: timed_out, crashed, filter_violation, out_of_cpu, killed,
    exited, malformed_reply."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class WorkerLimits:
    """What each worker of a pool gets (from `IngestSettings.sandbox_limits`)."""

    timeout_seconds: float
    jobs: int
    address_space_bytes: int
    cpu_seconds_per_job: int


class WorkerProcess:
    def __init__(
        self, process: subprocess.Popen[bytes], channel: socket.socket, memory: SharedMemory, jobs: int
    ) -> None:
        self.process = process
        self.channel = channel
        self.memory = memory
        self.jobs_left = jobs

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(cls, layout: SharedLayout, limits: WorkerLimits, entry: Sequence[str]) -> WorkerProcess:
        memory = SharedMemory.create(layout)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        arguments = WorkerArguments(
            channel_fd=theirs.fileno(),
            memory_fd=memory.fd,
            input_capacity=layout.input_capacity,
            output_offset=layout.output_offset,
            output_capacity=layout.output_capacity,
            address_space_bytes=limits.address_space_bytes,
            cpu_seconds_per_job=limits.cpu_seconds_per_job,
            jobs=limits.jobs,
            parent_pid=os.getpid(),
        )
        try:
            process = subprocess.Popen(
                [sys.executable, *_INTERPRETER_FLAGS, *entry, *arguments.to_argv()],
                env=_ENVIRONMENT,
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
                pass_fds=(theirs.fileno(), memory.fd),
            )
        except BaseException:
            ours.close()
            memory.close()
            raise
        finally:
            theirs.close()
        worker = cls(process, ours, memory, limits.jobs)
        try:
            worker._await_ready()
        except BaseException:
            worker.kill()
            raise
        return worker

    def _await_ready(self) -> None:
        try:
            failed_step = parse_ready(self._read_frame(ready_size(), time.monotonic() + START_SECONDS))
        except (MalformedReply, TimeoutError, EOFError) as error:
            raise SandboxUnavailable(
                f"the decoding worker did not start ({error or type(error).__name__})"
            ) from None
        if failed_step is not None:
            raise SandboxUnavailable(
                f"the decoding worker could not set up its sandbox: {failed_step} failed"
            )
        problems = confinement_problems(self.pid)
        if problems:
            raise SandboxUnavailable("the decoding worker is not confined: " + "; ".join(problems))

    def run(
        self, data: bytes, limits: SanitizeLimits, wanted_side: int | None, timeout: float
    ) -> DecodedImage:
        """Decode `data` in the worker; raises `RejectedInput` for a refusal it reports, `WorkerFailed`
        when it fails (it is then dead)."""
        deadline = time.monotonic() + timeout
        job = Job(
            next(_job_ids), len(data), limits.max_bytes, limits.max_pixels, limits.min_side, wanted_side
        )
        self.jobs_left -= 1
        self.memory.put_input(data)
        try:
            self.channel.sendall(job.pack())
            result = parse_result(self._read_frame(result_size(), deadline), job, self.memory.layout)
        except TimeoutError:
            self.kill()
            raise WorkerFailed("timed_out") from None
        except MalformedReply:
            self.kill()
            raise WorkerFailed("malformed_reply") from None
        except (EOFError, OSError):
            raise WorkerFailed(self._reap()) from None
        if isinstance(result, Refused):
            self.memory.release(len(data), 0)
            raise _rejection(result)
        return self._image(result, len(data))

    def _image(self, decoded: Decoded, input_length: int) -> DecodedImage:
        with self.memory.output(decoded.pixel_bytes) as pixels:
            image = Image.frombytes("RGB", decoded.size, pixels)  # a copy: the memory serves the next job
        self.memory.release(input_length, decoded.pixel_bytes)
        return DecodedImage(
            image=image, source_format=ImageFormat(decoded.format_name), source_size=decoded.source_size
        )

    def _read_frame(self, size: int, deadline: float) -> bytes:
        """Exactly one frame of `size` bytes; any other length is a malformed reply."""
        (length,) = FRAME_HEADER.unpack(self._read_exactly(FRAME_HEADER.size, deadline))
        if length != size:
            raise MalformedReply(f"a frame of {length} bytes where {size} were due")
        return self._read_exactly(size, deadline)

    def _read_exactly(self, size: int, deadline: float) -> bytes:
        buffer = bytearray()
        while len(buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer in time")
            self.channel.settimeout(remaining)
            try:
                chunk = self.channel.recv(size - len(buffer))
            except TimeoutError:
                raise TimeoutError("no answer in time") from None
            if not chunk:
                raise EOFError("the worker closed its channel")
            buffer += chunk
        return bytes(buffer)

    def _reap(self) -> str:
        """Why the worker is gone, once it is (it closed its channel: it exited or was killed)."""
        try:
            status = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            return "exited"
        self._close()
        return exit_reason(status)

    def stop(self) -> None:
        """Close the channel (the worker exits on its own), then make sure it is gone."""
        self.channel.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self._close()

    def _close(self) -> None:
        self.channel.close()
        if not self.memory.mapping.closed:
            self.memory.close()


def _rejection(refused: Refused) -> RejectedInput:
    return RejectedInput(refused.code, "in the decoding sandbox")


_REASON_OF_SIGNAL = {
    int(signal.SIGSYS): "filter_violation",  # its seccomp filter killed it
    int(signal.SIGXCPU): "out_of_cpu",  # past RLIMIT_CPU's soft limit
    int(signal.SIGKILL): "killed",  # past the hard limit, the OOM killer, or anyone else
}


def exit_reason(status: int) -> str:
    """A worker's end, as the pool counts it: the signal that ended it says why."""
    if status >= 0:
        return "exited"
    return _REASON_OF_SIGNAL.get(-status, "crashed")


def confinement_problems(pid: int) -> list[str]:
    """What /proc/<pid>/status says is missing from the worker's confinement (empty: none)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return ["its /proc status cannot be read"]
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    expected = {
        "Seccomp": "2",  # filter mode
        "NoNewPrivs": "1",
        "CapEff": "0000000000000000",
        "CapPrm": "0000000000000000",
    }
    return [
        f"{name} is {fields.get(name, '?').strip()}, not {value}"
        for name, value in expected.items()
        if fields.get(name, "").strip() != value
    ]
