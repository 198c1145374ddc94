"""The memory a decoding worker shares with the service: an anonymous memfd the service creates and seals.

Anonymous (memfd_create): no name in any file system, so nothing on disk and nothing another process can
open; it reaches the worker only as an inherited descriptor. Sealed against shrinking and growing before
the worker starts: a worker that could shrink it would make the service's next read of its mapping a
SIGBUS, a crash of the process that holds the keys. After each job, the pages beyond the first 16 MiB
of each area are given back (`release`), so that the memory the pool holds stays at the working set of
ordinary photos rather than at the largest one ever seen (a 50 MP frame is 150 MB per worker).
"""

from __future__ import annotations

import fcntl
import mmap
import os

from ingest.sandbox.protocol import PAGE, SharedLayout

#: Kept mapped between jobs (re-faulting pages costs about a millisecond per 10 MB); beyond it, freed.
_KEEP_BYTES = 16 * 1024 * 1024


class SharedMemory:
    def __init__(self, layout: SharedLayout, fd: int, mapping: mmap.mmap) -> None:
        self.layout = layout
        self.fd = fd
        self.mapping = mapping

    @classmethod
    def create(cls, layout: SharedLayout) -> SharedMemory:
        fd = os.memfd_create("likeness-decode", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, layout.size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            mapping = mmap.mmap(fd, layout.size)
        except BaseException:
            os.close(fd)
            raise
        return cls(layout, fd, mapping)

    @classmethod
    def attach(cls, layout: SharedLayout, fd: int) -> SharedMemory:
        """The worker's side: map the descriptor it inherited, which must be at least the layout's size."""
        if os.fstat(fd).st_size < layout.size:
            raise OSError("the shared memory is smaller than its layout")
        mapping = mmap.mmap(fd, layout.size)
        os.close(fd)  # the mapping holds a descriptor of its own
        return cls(layout, -1, mapping)

    def put_input(self, data: bytes) -> None:
        if len(data) > self.layout.input_capacity:
            raise ValueError("larger than the shared memory's input")
        self.mapping[: len(data)] = data

    def input(self, length: int) -> bytes:
        if length > self.layout.input_capacity:
            raise ValueError("larger than the shared memory's input")
        return self.mapping[:length]

    def put_output(self, pixels: bytes) -> None:
        if len(pixels) > self.layout.output_capacity:
            raise ValueError("larger than the shared memory's output")
        start = self.layout.output_offset
        self.mapping[start : start + len(pixels)] = pixels

    def output(self, length: int) -> memoryview:
        """A view of the pixels; release it (`with` or `.release()`) before the next job or `close`."""
        if length > self.layout.output_capacity:
            raise ValueError("larger than the shared memory's output")
        start = self.layout.output_offset
        return memoryview(self.mapping)[start : start + length]

    def release(self, input_length: int, output_length: int) -> None:
        """Give back the pages of a job beyond the first few MB of each area (MADV_REMOVE frees a memfd's
        pages for every process that maps it)."""
        for start, length in ((0, input_length), (self.layout.output_offset, output_length)):
            first = start + _KEEP_BYTES
            end = -(-(start + length) // PAGE) * PAGE
            if end > first:
                self.mapping.madvise(mmap.MADV_REMOVE, first, end - first)

    def close(self) -> None:
        self.mapping.close()
        if self.fd >= 0:
            os.close(self.fd)
