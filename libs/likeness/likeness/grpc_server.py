"""A `grpc.aio` server with health (NOT_SERVING while a dependency is down), reflection, graceful stop, and
traces and metrics of every call (`likeness.grpc_telemetry`)."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from likeness.grpc_telemetry import ServerTelemetryInterceptor

log = logging.getLogger(__name__)

DependencyCheck = Callable[[], bool]


class GrpcServer:
    def __init__(
        self,
        port: int,
        service_names: Sequence[str],
        dependencies: dict[str, DependencyCheck],
        host: str = "0.0.0.0",
        check_interval: float = 2.0,
        grace: float = 10.0,
    ) -> None:
        self.server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", 8 * 1024 * 1024), ("grpc.so_reuseport", 0)],
            # Continues the caller's trace (traceparent metadata) and counts every call by status code.
            interceptors=[ServerTelemetryInterceptor()],
        )
        self.port = port
        self.host = host
        self.service_names = list(service_names)
        self.dependencies = dependencies
        self.check_interval = check_interval
        self.grace = grace
        self.health = HealthServicer()
        self._serving = False
        self._watch: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        return self._serving

    async def start(self) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection([*self.service_names, reflection.SERVICE_NAME], self.server)
        self.server.add_insecure_port(f"{self.host}:{self.port}")
        await self.server.start()
        await self._update_health()
        self._watch = asyncio.create_task(self._watch_dependencies())

    async def _update_health(self) -> None:
        down = []
        for name, check in self.dependencies.items():
            try:
                ok = await asyncio.to_thread(check)
            except Exception:  # a failing check means the dependency is down, never a crash
                ok = False
            if not ok:
                down.append(name)
        serving = not down
        if serving != self._serving:
            log.info("health changed", extra={"serving": serving, "down": down})
        self._serving = serving
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def _watch_dependencies(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            await self._update_health()

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.grace)


def install_shutdown_handlers(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set the event so the process drains work before exiting."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
