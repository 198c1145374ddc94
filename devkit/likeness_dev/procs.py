"""Background server processes: start with logs to a file, stop gracefully, find again by recorded PID.

Every process starts in its own session (so a Ctrl-C in the terminal of `likeness dev up` does not reach
it and it outlives that command) and is stopped as a process group (so helpers it forks go too).

Where `LIKENESS_FORBID_SERVERS` is set (the unit test tier sets it, and child processes inherit it), no
server may start: `ManagedProcess.start` raises `ServerStartForbidden`, as does the test plugin's guard
for servers started in other ways (see likeness_dev.testing).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_GRACE_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1
#: Set (to any non-empty value) where no server may start: the unit test tier.
FORBID_SERVERS_ENV = "LIKENESS_FORBID_SERVERS"

# Every refused start, for the test plugin: code under test may catch the exception and carry on, and the
# plugin fails the test anyway. Appended to from any thread; the plugin takes them out between tests.
_refused: list[str] = []


class ServerStartForbidden(RuntimeError):
    """A server was about to start where none may run (`LIKENESS_FORBID_SERVERS` is set)."""


def servers_forbidden() -> bool:
    return bool(os.environ.get(FORBID_SERVERS_ENV))


def refuse_server_start(what: str) -> None:
    """Raise `ServerStartForbidden` (and remember it) if no server may start here; else do nothing."""
    if not servers_forbidden():
        return
    message = (
        f"{what}: no server may start here ({FORBID_SERVERS_ENV} is set: the unit test tier). A test that "
        "starts or uses a server must request the `infra` fixture (or one built on it) or `server_process`, "
        "which makes it an integration test (make test-integration)."
    )
    _refused.append(message)
    raise ServerStartForbidden(message)


def take_refused_starts() -> list[str]:
    """The refusals since the last call (and forgets them)."""
    taken = _refused[:]
    del _refused[: len(taken)]
    return taken


def find_binary(name: str) -> str:
    """The executable `name`: next to the running interpreter (the venv's bin) first, then on PATH."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    import shutil

    on_path = shutil.which(name)
    if on_path is None:
        raise FileNotFoundError(
            f"{name!r} not found next to {sys.executable} nor on PATH (install the dev requirements: "
            "pip install -r requirements/dev.txt)"
        )
    return on_path


def _kill_with_parent_hook() -> Callable[[], None] | None:
    """A preexec hook that makes the child get SIGKILL when this process dies (Linux only).

    Only used from the main thread: the kernel ties the signal to the *thread* that forked the child, so
    a child spawned from a short-lived worker thread would be killed when that thread ends.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    prctl = libc.prctl

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return hook


def process_start_ticks(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot (from /proc), or None if it does not exist.

    Stored next to a PID so that a later `likeness dev down` never signals an unrelated process that
    happens to have been given the same PID.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # exited, waiting to be reaped: gone for our purposes
        return None
    return int(fields[19])


def is_alive(pid: int, start_ticks: int | None) -> bool:
    """Whether the process `pid` that started at `start_ticks` is still running."""
    if sys.platform.startswith("linux"):
        current = process_start_ticks(pid)
        return current is not None and (start_ticks is None or current == start_ticks)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Send `sig` to the process group led by `pid` (all our processes lead one), else to `pid`."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate_recorded(pid: int, start_ticks: int | None, grace: float = DEFAULT_GRACE_SECONDS) -> bool:
    """Stop a process this project started earlier, known only by PID (+ start time): SIGTERM, then
    SIGKILL after `grace` seconds. Returns False if it was not running (anymore)."""
    if not is_alive(pid, start_ticks):
        return False
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while is_alive(pid, start_ticks):
        if time.monotonic() > deadline:
            signal_group(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5.0
            while is_alive(pid, start_ticks) and time.monotonic() < kill_deadline:
                time.sleep(0.05)
            break
        time.sleep(0.05)
    return True


def read_log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file ('' if there is none)."""
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - 64 * 1024))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One background server process with its log file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    die_with_parent: bool = True
    _popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        refuse_server_start(f"starting {self.name} ({Path(self.argv[0]).name if self.argv else '?'})")
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            log.write(f"\n=== {stamp} starting {self.name}: {Path(self.argv[0]).name} ===\n".encode())
            log.flush()
            # The child keeps its own copy of the file descriptor; ours can be closed right away.
            self._popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=_kill_with_parent_hook() if self.die_with_parent else None,
            )

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def _exited_unreaped(self, pid: int) -> bool:
        # WNOWAIT leaves the zombie in place, so the PID (and process group ID) cannot be reused by an
        # unrelated process while we still signal the group below.
        try:
            result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return result is not None

    def terminate(self) -> None:
        """Ask the process (group) to stop without waiting; `stop()` then waits for it."""
        if self._popen is not None and self._popen.poll() is None:
            signal_group(self._popen.pid, signal.SIGTERM)

    def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """SIGTERM the process group, SIGKILL after `grace` seconds. Idempotent."""
        popen = self._popen
        if popen is None or popen.returncode is not None:
            return
        pid = popen.pid
        signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while not self._exited_unreaped(pid):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        # Whatever is left in the group (the leader after the grace, or helpers it forked) is killed.
        signal_group(pid, signal.SIGKILL)
        popen.wait()

    def log_tail(self, lines: int = 40) -> str:
        return read_log_tail(self.log_path, lines)

    def record(self) -> dict[str, Any]:
        """What `likeness dev down` needs to find and stop this process from another command."""
        pid = self.pid
        return {
            "name": self.name,
            "pid": pid,
            "start_ticks": process_start_ticks(pid) if pid is not None else None,
            "log": str(self.log_path),
        }
