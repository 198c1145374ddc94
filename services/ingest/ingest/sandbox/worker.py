"""A decoding worker: `python -I -B -m ingest.sandbox.worker <arguments>`, started by the pool, never by hand.

It confines itself before it reads a byte of any upload, in this order: resource limits, no-new-privileges,
its shared memory mapped, every decoder loaded (`warm_up`), no capabilities, then the seccomp filter
(`syscall_filter`); then it says it is ready, and serves jobs one at a time until its channel closes. A
step that fails is reported (by name, nothing else) and the worker exits: the service refuses to use a
worker that is not fully confined, and checks the result in /proc itself.

This entry point decodes with `ingest.decode.decode_image` and nothing else: what it runs is fixed by this
module, not by its arguments or environment (it has none worth the name).
"""

from __future__ import annotations

import math
import os
import resource
import sys

from ingest.decode import Decoder, decode_image
from ingest.reasons import ReasonCode, RejectedInput
from ingest.sandbox import privileges, syscall_filter
from ingest.sandbox.protocol import (
    FRAME_HEADER,
    Decoded,
    Job,
    Refused,
    WorkerArguments,
    job_size,
    ready,
)
from ingest.sandbox.shared_memory import SharedMemory
from ingest.sandbox.warm_up import warm_up

#: Descriptors: the ones inherited, plus room for the imports of the warm-up (one file at a time).
_MAX_DESCRIPTORS = 32
#: CPU seconds the start may take (imports, warm-up), on top of the per-job budget.
_START_CPU_SECONDS = 30


def main() -> None:
    serve(decode_image, sys.argv[1:])


def serve(decode: Decoder, argv: list[str]) -> None:
    """Confine this process, then decode jobs from the channel until it closes."""
    arguments = WorkerArguments.from_argv(argv)
    channel = arguments.channel_fd
    step = "limits"
    try:
        _limit_resources(arguments)
        step = "privileges"
        privileges.forbid_new_privileges()
        privileges.die_with_parent()
        if os.getppid() != arguments.parent_pid:  # the service ended before the line above took effect
            raise OSError("orphaned")
        step = "shared_memory"
        memory = SharedMemory.attach(arguments.layout, arguments.memory_fd)
        step = "warm_up"
        warm_up(decode)
        step = "capabilities"  # after the warm-up, whose imports read files with the rights of the user
        privileges.drop_capabilities()
        step = "seccomp"
        syscall_filter.install()
    except BaseException:
        _send(channel, ready(step))
        raise SystemExit(1) from None
    _send(channel, ready())
    for _ in range(arguments.jobs):
        job = _next_job(channel, arguments)
        if job is None:
            return
        _budget_cpu(arguments.cpu_seconds_per_job)
        _send(channel, _run(job, memory, decode))


def _limit_resources(arguments: WorkerArguments) -> None:
    lifetime_cpu = _START_CPU_SECONDS + arguments.jobs * arguments.cpu_seconds_per_job
    for limit, value in (
        (resource.RLIMIT_CORE, 0),  # a crash writes no core file (it would hold a person's photo)
        (resource.RLIMIT_FSIZE, 0),  # no file can be written or grown
        (resource.RLIMIT_NOFILE, _MAX_DESCRIPTORS),
        (resource.RLIMIT_AS, arguments.address_space_bytes),
    ):
        resource.setrlimit(limit, (value, value))
    resource.setrlimit(resource.RLIMIT_CPU, (_START_CPU_SECONDS, lifetime_cpu))


def _budget_cpu(seconds: int) -> None:
    """From now, this job may use `seconds` of CPU (SIGXCPU past it); the hard limit bounds the worker's
    whole life, and no-capabilities keeps it from being raised."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (min(used + seconds, hard), hard))


def _next_job(channel: int, arguments: WorkerArguments) -> Job | None:
    header = _read_exactly(channel, FRAME_HEADER.size)
    if header is None:
        return None  # the service closed the channel: recycled, or shutting down
    (length,) = FRAME_HEADER.unpack(header)
    payload = _read_exactly(channel, length) if length == job_size() else None
    if payload is None:
        raise SystemExit(2)
    job = Job.unpack(payload)
    if job.data_length > arguments.input_capacity:
        raise SystemExit(2)
    return job


def _run(job: Job, memory: SharedMemory, decode: Decoder) -> bytes:
    data = memory.input(job.data_length)
    try:
        decoded = decode(data, job.limits(), min_side=job.wanted_side)
    except RejectedInput as rejection:
        return Refused(job.job_id, rejection.code).pack()
    except Exception:  # whatever else a decoder raises, the photo cannot be read
        return Refused(job.job_id, ReasonCode.CORRUPT_IMAGE).pack()
    del data
    image = decoded.image if decoded.image.mode == "RGB" else decoded.image.convert("RGB")
    pixels = image.tobytes()
    if len(pixels) > memory.layout.output_capacity:
        return Refused(job.job_id, ReasonCode.IMAGE_TOO_LARGE).pack()
    memory.put_output(pixels)
    return Decoded(job.job_id, decoded.source_format.value, image.size, decoded.source_size).pack()


def _read_exactly(fd: int, length: int) -> bytes | None:
    chunks, remaining = [], length
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _send(fd: int, message: bytes) -> None:
    view = memoryview(message)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    main()
