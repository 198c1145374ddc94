"""More replicas of a running stack's gateway, for tests of what must hold across replicas.

`gateway_replicas(stack, names, env)` starts `python -m gateway serve` once per name beside the stack's
own gateway: the same identity, secrets, certificate, NATS and backends (as a Deployment's pods share
them), each on HTTP and metrics ports of its own, with `env` on top (settings of the test). The stack's
processes and records are left as they are; the replicas stop when the `with` block ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from likeness_dev import health
from likeness_dev.health import Probe
from likeness_dev.ports import LOOPBACK, free_port
from likeness_dev.procs import ManagedProcess
from likeness_dev.stack import DevStack, StackError, StackSettings


@dataclass
class GatewayReplica:
    process: ManagedProcess
    http_port: int
    metrics_port: int

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}"


@contextmanager
def gateway_replicas(
    stack: DevStack, names: Sequence[str], env: Mapping[str, str] | None = None, timeout: float | None = None
) -> Iterator[list[GatewayReplica]]:
    """Gateway replicas named `names` (their log files), ready (/readyz) before the block runs."""
    base = stack.services["gateway"]
    replicas: list[GatewayReplica] = []
    try:
        for name in names:
            http_port, metrics_port = free_port(), free_port()
            own = dict(base.env) | {
                "LIKENESS_HTTP_PORT": str(http_port),
                "LIKENESS_METRICS_PORT": str(metrics_port),
            }
            process = ManagedProcess(
                name,
                base.spec.command,
                stack.log_dir / f"{name}.log",
                env=own | dict(env or {}),
                cwd=stack.project_dir,
            )
            replicas.append(GatewayReplica(process, http_port, metrics_port))
            process.start()
        _wait_ready(replicas, timeout or StackSettings().stack_timeout)
        yield replicas
    finally:
        for replica in replicas:
            replica.process.terminate()
        for replica in replicas:
            replica.process.stop()


def _wait_ready(replicas: Sequence[GatewayReplica], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(replicas)
    while pending:
        replica = pending[0]
        if not replica.process.running:
            raise StackError(
                f"{replica.process.name} exited with code {replica.process.returncode} before it was ready\n"
                f"--- last lines of {replica.process.log_path} ---\n{replica.process.log_tail()}"
            )
        reason = health.check(Probe.READYZ, replica.http_port)
        if reason is None:
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise StackError(
                f"{replica.process.name} was not ready within {timeout:.0f}s: {reason}\n"
                f"--- last lines of {replica.process.log_path} ---\n{replica.process.log_tail()}"
            )
        time.sleep(0.25)
