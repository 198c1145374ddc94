"""The seccomp filter a decoding worker installs once its decoders are loaded: an allow-list.

An allow-list, not a deny-list: decoding pixels from memory into memory needs few system calls (memory,
threads, signals to itself, clocks, reading and writing the descriptors it already has), and the kernel
adds new ones every release (io_uring, pidfd_getfd, open_tree...), each of which a deny-list would have
to learn about to stay closed. Everything not listed fails with EPERM. EPERM rather than death, because
CPython itself may try a harmless call late (linecache opening a source file to format a warning, a lazy
import): that must fail as a denial the decoder survives, not turn a good photo into a crash.

Calls that no decoding path ever makes, and that an exploit needs (running a program, making a socket,
reading or tracing another process, new namespaces, kernel keyrings, BPF), kill the worker outright
(SIGSYS), which the service counts as a filter violation. Of the allowed calls, those that can reach
another process are pinned to this one: kill and tgkill to its own pid, prlimit64 to itself (pid 0),
clone to new threads only (a fork would need a process the filter did not see start); clone3 answers
ENOSYS so that glibc falls back to clone, whose flags the filter can read.

The filter covers every thread (TSYNC) and refuses any other architecture's system calls (an x86-64
process can make i386 calls through int 0x80).
"""

from __future__ import annotations

import errno
import os

#: Allowed without conditions: memory, threads' synchronisation, signals' plumbing, clocks, and I/O on
#: descriptors the worker already holds (its channel and its shared memory: it can create no other).
ALLOWED = (
    "read",
    "readv",
    "write",
    "writev",
    "lseek",
    "fstat",
    "close",
    "brk",
    "mmap",
    "munmap",
    "mremap",
    "mprotect",
    "madvise",
    "futex",
    "set_robust_list",
    "rseq",
    "set_tid_address",
    "sched_yield",
    "sched_getaffinity",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "restart_syscall",
    "getpid",
    "gettid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getrandom",
    "getrusage",
    "times",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    "uname",
    "exit",
    "exit_group",
)

#: Never made by a decoding path; an exploit's first moves. The worker dies of SIGSYS.
KILLED = (
    "execve",
    "execveat",
    "fork",
    "vfork",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_open",
    "pidfd_getfd",
    "pidfd_send_signal",
    "socket",
    "socketpair",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "open_by_handle_at",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
)

_CLONE_THREAD = 0x00010000


def install() -> None:
    """Load the filter into this process (all its threads). Raises OSError when seccomp is unavailable."""
    import pyseccomp as seccomp  # type: ignore[import-untyped]  # (ctypes over libseccomp, no stubs)

    own_pid = os.getpid()
    rules = seccomp.SyscallFilter(seccomp.ERRNO(errno.EPERM))
    rules.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    rules.set_attr(seccomp.Attr.CTL_NNP, 1)
    rules.set_attr(seccomp.Attr.CTL_TSYNC, 1)
    for name in ALLOWED:
        rules.add_rule(seccomp.ALLOW, name)
    # Reaching only itself: a signal to its own pid (abort(), raise()); limits read or set for itself.
    rules.add_rule(seccomp.ALLOW, "kill", seccomp.Arg(0, seccomp.EQ, own_pid))
    rules.add_rule(seccomp.ALLOW, "tgkill", seccomp.Arg(0, seccomp.EQ, own_pid))
    rules.add_rule(seccomp.ALLOW, "prlimit64", seccomp.Arg(0, seccomp.EQ, 0))
    # Threads (libheif decodes with several) but no new process.
    rules.add_rule(seccomp.ALLOW, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, _CLONE_THREAD))
    rules.add_rule(seccomp.KILL_PROCESS, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for name in KILLED:
        rules.add_rule(seccomp.KILL_PROCESS, name)
    rules.load()
