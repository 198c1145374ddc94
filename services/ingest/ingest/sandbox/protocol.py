"""What the service and a decoding worker say to each other: fixed-size messages, a shared-memory layout.

Every message on the channel is a frame: a 4-byte big-endian length, then that many bytes. Each kind of
message has one fixed size and one `struct` layout, so the service reads exactly the bytes it expects and
nothing else: a worker that has parsed hostile bytes is untrusted, and whatever it sends is checked field by
field (`MalformedReply` otherwise), never unpickled or evaluated. The upload's bytes and the decoded pixels
travel through shared memory the service created (`SharedLayout`), not the channel: a 12 MP frame is 36 MB.
"""

from __future__ import annotations

import os
import struct
from dataclasses import astuple, dataclass, fields

from ingest.limits import SanitizeLimits
from ingest.reasons import ReasonCode

FRAME_HEADER = struct.Struct(">I")

#: The Pillow format ids the worker may report (the values of `ingest.formats.ImageFormat`, without
#: importing Pillow here: this module is imported before the worker loads any decoder).
FORMAT_NAMES = ("JPEG", "PNG", "WEBP", "HEIF")
#: The verdicts decoding itself can reach; any other code from a worker is a malformed reply.
DECODE_REASONS = (
    ReasonCode.FILE_TOO_LARGE,
    ReasonCode.UNSUPPORTED_FORMAT,
    ReasonCode.CORRUPT_IMAGE,
    ReasonCode.IMAGE_TOO_LARGE,
    ReasonCode.IMAGE_TOO_SMALL,
)
#: The steps of a worker's start, in order; its first message names the one that failed (0: none).
SETUP_STEPS = ("ready", "limits", "privileges", "shared_memory", "warm_up", "capabilities", "seccomp")

_READY = struct.Struct(">4sB")  # magic, index in SETUP_STEPS
_JOB = struct.Struct(">4sQIIQII")  # magic, job id, data length, max bytes, max pixels, min side, wanted side
_RESULT = struct.Struct(">4sQBBBIIII")  # magic, job id, outcome, reason, format, width, height, source w, h
_READY_MAGIC, _JOB_MAGIC, _RESULT_MAGIC = b"LKW1", b"LKJ1", b"LKR1"
_DECODED, _REFUSED = 0, 1
#: Pixels come back as 8-bit RGB, three bytes each.
PIXEL_BYTES = 3
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class MalformedReply(Exception):
    """A worker's message is not exactly what the protocol allows."""


def frame(payload: bytes) -> bytes:
    return FRAME_HEADER.pack(len(payload)) + payload


def ready_size() -> int:
    return _READY.size


def result_size() -> int:
    return _RESULT.size


def job_size() -> int:
    return _JOB.size


# --- the worker's start --------------------------------------------------------------------------------


def ready(failed_step: str | None = None) -> bytes:
    """The worker's first message: ready, or the setup step that failed."""
    return frame(_READY.pack(_READY_MAGIC, SETUP_STEPS.index(failed_step or "ready")))


def parse_ready(payload: bytes) -> str | None:
    """None when the worker is ready, else the name of the setup step that failed."""
    try:
        magic, step = _READY.unpack(payload)
    except struct.error:
        raise MalformedReply("ready message of the wrong size") from None
    if magic != _READY_MAGIC or step >= len(SETUP_STEPS):
        raise MalformedReply("not a ready message")
    return None if step == 0 else SETUP_STEPS[step]


@dataclass(frozen=True)
class SharedLayout:
    """The shared memory of one worker: the upload's bytes at 0, the decoded pixels at `output_offset`."""

    input_capacity: int
    output_offset: int
    output_capacity: int

    @classmethod
    def for_limits(cls, max_bytes: int, max_pixels: int) -> SharedLayout:
        """Room for the largest upload and the largest frame the limits allow, as 8-bit RGB."""
        offset = _page_aligned(max_bytes)
        return cls(input_capacity=max_bytes, output_offset=offset, output_capacity=max_pixels * PIXEL_BYTES)

    @property
    def size(self) -> int:
        return _page_aligned(self.output_offset + self.output_capacity)


def _page_aligned(size: int) -> int:
    return -(-size // PAGE) * PAGE


@dataclass(frozen=True)
class WorkerArguments:
    """What a worker is told on its command line (integers only, parsed strictly by the worker)."""

    channel_fd: int
    memory_fd: int
    input_capacity: int
    output_offset: int
    output_capacity: int
    address_space_bytes: int
    cpu_seconds_per_job: int
    jobs: int
    parent_pid: int

    @property
    def layout(self) -> SharedLayout:
        return SharedLayout(self.input_capacity, self.output_offset, self.output_capacity)

    def to_argv(self) -> list[str]:
        return [str(value) for value in astuple(self)]

    @classmethod
    def from_argv(cls, argv: list[str]) -> WorkerArguments:
        names = [field.name for field in fields(cls)]
        if len(argv) != len(names) or not all(word.isdigit() for word in argv):
            raise SystemExit(f"usage: python -m ingest.sandbox.worker {' '.join(names).upper()}")
        return cls(*(int(word) for word in argv))


# --- a job and its result ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """Decode the first `data_length` bytes of the shared memory under these limits."""

    job_id: int
    data_length: int
    max_bytes: int
    max_pixels: int
    min_side: int
    wanted_side: int | None
    """`decode_image`'s `min_side`: reduce while decoding as far as this shorter side allows (None: full)."""

    def pack(self) -> bytes:
        wanted = self.wanted_side or 0
        return frame(
            _JOB.pack(
                _JOB_MAGIC,
                self.job_id,
                self.data_length,
                self.max_bytes,
                self.max_pixels,
                self.min_side,
                wanted,
            )
        )

    @classmethod
    def unpack(cls, payload: bytes) -> Job:
        magic, job_id, length, max_bytes, max_pixels, min_side, wanted = _JOB.unpack(payload)
        if magic != _JOB_MAGIC:
            raise ValueError("not a job")
        return cls(job_id, length, max_bytes, max_pixels, min_side, wanted or None)

    def limits(self) -> SanitizeLimits:
        """The limits decoding checks (the rest keep their defaults: decoding does not use them)."""
        return SanitizeLimits(max_bytes=self.max_bytes, max_pixels=self.max_pixels, min_side=self.min_side)


@dataclass(frozen=True)
class Decoded:
    """The pixels are in the shared memory at the layout's output offset: width x height, 8-bit RGB."""

    job_id: int
    format_name: str
    size: tuple[int, int]
    source_size: tuple[int, int]

    def pack(self) -> bytes:
        return frame(
            _RESULT.pack(
                _RESULT_MAGIC,
                self.job_id,
                _DECODED,
                0,
                FORMAT_NAMES.index(self.format_name),
                *self.size,
                *self.source_size,
            )
        )

    @property
    def pixel_bytes(self) -> int:
        return self.size[0] * self.size[1] * PIXEL_BYTES


@dataclass(frozen=True)
class Refused:
    """Decoding found the upload unusable, for this reason."""

    job_id: int
    code: ReasonCode

    def pack(self) -> bytes:
        return frame(
            _RESULT.pack(_RESULT_MAGIC, self.job_id, _REFUSED, DECODE_REASONS.index(self.code), 0, 0, 0, 0, 0)
        )


def parse_result(payload: bytes, job: Job, layout: SharedLayout) -> Decoded | Refused:
    """The worker's answer to `job`, checked against what the job and the layout allow.

    A decoded image must fit the shared memory and be no larger than the photo it came from, which must
    itself be within the job's limits: the numbers the service then computes with (scales, face boxes)
    come from here.
    """
    try:
        magic, job_id, outcome, reason, format_index, *sizes = _RESULT.unpack(payload)
    except struct.error:
        raise MalformedReply("result of the wrong size") from None
    if magic != _RESULT_MAGIC or job_id != job.job_id:
        raise MalformedReply("not the result of this job")
    width, height, source_width, source_height = sizes
    if outcome == _REFUSED:
        if reason >= len(DECODE_REASONS) or format_index or any(sizes):
            raise MalformedReply("a refusal with an unknown reason")
        return Refused(job_id, DECODE_REASONS[reason])
    if outcome != _DECODED or reason or format_index >= len(FORMAT_NAMES):
        raise MalformedReply("an unknown outcome or format")
    if not (0 < width <= source_width and 0 < height <= source_height):
        raise MalformedReply("an image larger than its source")
    if source_width * source_height > job.max_pixels or min(source_width, source_height) < job.min_side:
        raise MalformedReply("a source size outside the limits")
    decoded = Decoded(job_id, FORMAT_NAMES[format_index], (width, height), (source_width, source_height))
    if decoded.pixel_bytes > layout.output_capacity:
        raise MalformedReply("more pixels than the shared memory holds")
    return decoded
