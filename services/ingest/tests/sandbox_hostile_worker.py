"""TEST ONLY: a decoding worker with a planted hostile decoder, for tests/test_ingest_sandbox.py.

Run as the pool runs its workers (`python -I -B <this file> [mode] <worker arguments>`), it goes through
the production worker's own `serve`, so every confinement step is the real one; only the decoder differs.
An upload that starts with a JPEG signature and then `ATTACK <name> <argument>` runs that attack inside
the sandbox, as an exploited decoder would, and reports what happened in the returned pixels (the only
channel a decoder has): "done: <what it got>" or "denied: <error>". Anything else is decoded normally.
The same attacks can run in the test's own process (`attack`), to show they work where nothing stops them.

Modes: none (confined as in production), `unconfined` (says it is ready without confining itself, to show
the service checks /proc), `no-seccomp` (its filter fails to load, as on a kernel without seccomp).

Nothing in the production package can load this file: the pool starts it only when a test names it.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import socket
import sys
import time

from PIL import Image

from ingest.decode import DecodedImage, decode_image
from ingest.formats import ImageFormat
from ingest.limits import SanitizeLimits
from ingest.sandbox import syscall_filter, worker
from ingest.sandbox.protocol import WorkerArguments, ready

ATTACK = b"\xff\xd8\xffATTACK "
SIDE = 256
_libc = ctypes.CDLL(None, use_errno=True)
_PTRACE_ATTACH = 16


_KERNEL_ADDRESS = 0xFFFF_8000_0000_0000


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


class _RLimit(ctypes.Structure):
    _fields_ = [("soft", ctypes.c_ulong), ("hard", ctypes.c_ulong)]


def attack(name: str, argument: str) -> str:
    """Run one attack here, in this process; what it got, or why not."""
    try:
        return "done: " + _ATTACKS[name](argument)
    except (OSError, MemoryError) as error:
        return f"denied: {type(error).__name__} errno={getattr(error, 'errno', None)}"


def _read(path: str) -> str:
    with open(path, "rb") as file:
        return file.read(4096).hex()


def _read_memory(where: str) -> str:
    pid, address, length = (int(part) for part in where.split(":"))
    with open(f"/proc/{pid}/mem", "rb") as memory:
        memory.seek(address)
        return memory.read(length).hex()


def _vm_read(where: str) -> str:
    pid, address, length = (int(part) for part in where.split(":"))
    buffer = ctypes.create_string_buffer(length)
    local = _IoVec(ctypes.cast(buffer, ctypes.c_void_p), length)
    remote = _IoVec(address, length)
    copied = _libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if copied < 0:
        raise OSError(ctypes.get_errno(), "process_vm_readv")
    return buffer.raw[:copied].hex()


def _ptrace(pid: str) -> str:
    if _libc.ptrace(_PTRACE_ATTACH, int(pid), None, None) != 0:
        raise OSError(ctypes.get_errno(), "ptrace")
    return "attached"


def _write(path: str) -> str:
    with open(path, "wb") as file:
        file.write(b"written from the sandbox")
    return "wrote"


def _socket(port: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        sock.connect_ex(("127.0.0.1", int(port)))
    return "made a socket"


def _signal(pid: str) -> str:
    os.kill(int(pid), 0)
    return "may signal it"


def _allocate(size: str) -> str:
    block = bytearray(int(size))
    block[-1] = 1
    return f"allocated {len(block)}"


def _raise_memory_limit(_: str) -> str:
    unlimited = _RLimit(resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    if _libc.setrlimit(resource.RLIMIT_AS, ctypes.byref(unlimited)) != 0:
        raise OSError(ctypes.get_errno(), "setrlimit")
    return "raised"


def _environ(_: str) -> str:
    return ",".join(sorted(os.environ))


def _exec(_: str) -> str:
    os.execv("/bin/true", ["true"])  # noqa: S606 - what an exploit would try first


def _fork(_: str) -> str:
    child = os.fork()
    if child == 0:
        os._exit(0)
    return "forked"


def _segfault(_: str) -> str:
    return ctypes.string_at(_KERNEL_ADDRESS, 1).hex()  # no user-space process may read there


def _sigsegv(_: str) -> str:
    os.kill(os.getpid(), signal.SIGSEGV)
    return "survived"


def _spin(_: str) -> str:
    while True:
        pass


def _sleep(_: str) -> str:
    time.sleep(3600)
    return "woke"


_ATTACKS = {
    "read": _read,
    "read-memory": _read_memory,
    "vm-read": _vm_read,
    "ptrace": _ptrace,
    "write": _write,
    "socket": _socket,
    "signal": _signal,
    "allocate": _allocate,
    "raise-memory-limit": _raise_memory_limit,
    "environ": _environ,
    "exec": _exec,
    "fork": _fork,
    "segfault": _segfault,
    "sigsegv": _sigsegv,
    "spin": _spin,
    "sleep": _sleep,
}


def _report(
    text: str, size: tuple[int, int] = (SIDE, SIDE), source: tuple[int, int] = (SIDE, SIDE)
) -> DecodedImage:
    pixels = text.encode()[: size[0] * size[1] * 3].ljust(size[0] * size[1] * 3, b"\0")
    return DecodedImage(Image.frombytes("RGB", size, pixels), ImageFormat.JPEG, source)


def hostile_decode(data: bytes, limits: SanitizeLimits, *, min_side: int | None = None) -> DecodedImage:
    if not data.startswith(ATTACK):
        return decode_image(data, limits, min_side=min_side)
    name, _, argument = data[len(ATTACK) :].decode().partition(" ")
    if name == "lie":  # an image larger than the photo it claims to come from
        return _report("lie", size=(SIDE * 2, SIDE * 2))
    if name == "as-png":  # a format other than the one the upload's bytes announce
        return DecodedImage(_report("png").image, ImageFormat.PNG, (SIDE, SIDE))
    if name == "garbage":  # bytes on the channel that are not the protocol
        os.write(int(sys.argv[-9]), b"\x7f\xff\xff\xff garbage")
        return _report("garbage")
    return _report(attack(name, argument))


def _unconfined(argv: list[str]) -> None:
    """Claims to be ready without confining itself."""
    arguments = WorkerArguments.from_argv(argv)
    worker._send(arguments.channel_fd, ready())
    while worker._read_exactly(arguments.channel_fd, 4) is not None:
        pass


def _failing_seccomp() -> None:
    raise OSError("seccomp is not available")


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "unconfined":
        _unconfined(rest)
    elif mode == "no-seccomp":
        syscall_filter.install = _failing_seccomp
        worker.serve(hostile_decode, rest)
    else:
        worker.serve(hostile_decode, [mode, *rest])
