"""Free loopback ports for local servers, and probes for whether something listens on one."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Sequence

LOOPBACK = "127.0.0.1"

# Below the kernel's ephemeral range (32768-60999 by default): a port picked there is never handed out
# behind our back as the source port of an outgoing connection between "found free" and "server binds".
_PORT_RANGE = (15000, 32000)
_handed_out: set[int] = set()
_lock = threading.Lock()


class NoFreePortError(RuntimeError):
    """No free port (group) was found after many tries."""


def _can_bind(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(*, also_free: Sequence[int] = (), host: str = LOOPBACK) -> int:
    """A free TCP port P on `host` such that P + offset is free too for every offset in `also_free`.

    Some servers open a second port at a fixed offset from the one they are given (OpenBao's cluster
    port is +1, the SeaweedFS worker dials the admin gRPC port at +10000), so those must be free as
    well. Ports handed out by this process are never handed out twice, so a caller can ask for all
    its ports first and start its servers afterwards.
    """
    offsets = (0, *also_free)
    low, high = _PORT_RANGE
    top = high - max(offsets)
    if top <= low:
        # An offset too big for our range: allow the whole non-privileged range.
        low, top = 1024, 65535 - max(offsets)
    with _lock:
        for _ in range(500):
            port = random.randint(low, top)  # noqa: S311 - not security relevant
            candidates = [port + offset for offset in offsets]
            if any(candidate in _handed_out for candidate in candidates):
                continue
            if all(_can_bind(candidate, host) for candidate in candidates):
                _handed_out.update(candidates)
                return port
    raise NoFreePortError(f"no free port on {host} (with offsets {list(also_free)}) after 500 tries")


def is_listening(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to host:port is accepted right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until_closed(ports: Sequence[int], timeout: float = 10.0, host: str = LOOPBACK) -> list[int]:
    """Wait until nothing accepts connections on any of `ports`; returns those still open at the end."""
    deadline = time.monotonic() + timeout
    open_ports = list(ports)
    while open_ports:
        open_ports = [port for port in open_ports if is_listening(port, host, timeout=0.2)]
        if not open_ports or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return open_ports


def wait_until_listening(ports: Sequence[int], timeout: float = 10.0, host: str = LOOPBACK) -> list[int]:
    """Wait until every one of `ports` accepts connections; returns those still silent at the end."""
    deadline = time.monotonic() + timeout
    silent = list(ports)
    while silent:
        silent = [port for port in silent if not is_listening(port, host, timeout=0.2)]
        if not silent or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return silent
