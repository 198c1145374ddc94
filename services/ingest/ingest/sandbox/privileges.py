"""The process rights the sandbox sets through prctl(2) and capset(2), which Python's os module lacks.

Linux only. Every call checks its result: a sandbox that silently failed to drop a right would be worse
than none, so a failure raises `OSError` and the caller refuses to go on.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from functools import cache

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapabilityHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapabilitySet(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


@cache
def _libc() -> ctypes.CDLL:
    if not sys.platform.startswith("linux"):
        raise OSError("the decoding sandbox needs Linux (prctl, seccomp)")
    # The C library the interpreter itself runs on (no ldconfig lookup, which would start a process).
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, argument: int = 0) -> int:
    result: int = _libc().prctl(
        option, ctypes.c_ulong(argument), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)
    )
    if result < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"prctl({option}): {os.strerror(error)}")
    return result


def make_undumpable() -> None:
    """No core dumps of this process, and no ptrace or /proc/<pid>/mem|environ for processes of its user.

    The ingest service calls it first thing: its memory holds Vault tokens and data keys.
    """
    _prctl(PR_SET_DUMPABLE, 0)
    if _prctl(PR_GET_DUMPABLE) != 0:
        raise OSError("the process is still dumpable")


def is_dumpable() -> bool:
    return _prctl(PR_GET_DUMPABLE) != 0


def forbid_new_privileges() -> None:
    """No execve() may ever grant more rights (setuid binaries, file capabilities); seccomp needs it."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if _prctl(PR_GET_NO_NEW_PRIVS) != 1:
        raise OSError("no-new-privileges did not stick")


def die_with_parent() -> None:
    """SIGKILL when the thread that started this process ends (the pool's spawner: the service)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def drop_capabilities() -> None:
    """Empty the effective, permitted and inheritable capability sets (a worker started by root, as in a
    CI container, would otherwise keep CAP_SYS_PTRACE, CAP_KILL, CAP_SYS_RESOURCE...). Without a permitted
    capability there is no way back, and no-new-privileges keeps exec from granting any."""
    header = _CapabilityHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    empty = (_CapabilitySet * 2)()
    if _libc().capset(ctypes.byref(header), empty) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"capset: {os.strerror(error)}")
