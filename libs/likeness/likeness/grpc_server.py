"""A `grpc.aio` server for one service: mutual TLS only, caller authorization on every method, health
(NOT_SERVING while a dependency is down) on a plaintext port of its own, graceful stop, and traces and
metrics of every call (`likeness.grpc_telemetry`).

- The service port serves TLS and requires a client certificate of our CA (`likeness.grpc_tls`); the
  certificate, key and CA are read again from disk when they change, so renewals need no restart. There
  is no plaintext service port, in development either.
- Every call passes `likeness.grpc_callers.CallerInterceptor` first: the caller's identity (from its
  certificate) must be in the method's row of the service's table; anything else is PERMISSION_DENIED and
  reported to `on_denied` (the audit trail).
- The health port answers `grpc.health.v1.Health` in plaintext and nothing else: Kubernetes' gRPC probes
  send no client certificate. The service port answers health too (the gateway's readiness asks there).
- Reflection only when asked for (development); never in production.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from likeness.grpc_callers import (
    HEALTH_METHODS,
    REFLECTION_METHODS,
    CallerInterceptor,
    CallerTable,
    DeniedCallSink,
)
from likeness.grpc_telemetry import ServerTelemetryInterceptor
from likeness.grpc_tls import ReloadingServerCredentials
from likeness.grpc_user_tokens import UserTokenInterceptor
from likeness.storage_full import StorageFullInterceptor

log = logging.getLogger(__name__)

DependencyCheck = Callable[[], bool]
MAX_RECEIVE_BYTES = 8 * 1024 * 1024


class GrpcServer:
    def __init__(
        self,
        port: int,
        service_names: Sequence[str],
        dependencies: dict[str, DependencyCheck],
        *,
        tls: ReloadingServerCredentials,
        callers: CallerTable,
        health_port: int,
        on_denied: DeniedCallSink | None = None,
        reflection: bool = False,
        user_tokens: UserTokenInterceptor | None = None,
        host: str = "0.0.0.0",
        check_interval: float = 2.0,
        grace: float = 10.0,
    ) -> None:
        self.reflection = reflection
        open_methods = HEALTH_METHODS | (REFLECTION_METHODS if reflection else frozenset())
        self.server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", MAX_RECEIVE_BYTES), ("grpc.so_reuseport", 0)],
            # Caller authorization first: a refused call reaches neither the telemetry nor the servicer.
            # Telemetry continues the caller's trace (traceparent metadata) and counts every call by code.
            # Then the end user's token, checked against the method's rule (`likeness.grpc_user_tokens`).
            interceptors=[
                CallerInterceptor(callers, open_methods, on_denied),
                ServerTelemetryInterceptor(),
                *([user_tokens] if user_tokens is not None else []),
                # Innermost: a write refused by a full stream answers `storage_full`, and a JetStream request
                # unanswered (a leader failing over) `unavailable`, not INTERNAL.
                StorageFullInterceptor(),
            ],
        )
        # Health only: no interceptor needs to see probes, and no servicer but health is ever added here.
        self.health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        self.tls = tls
        self.port = port
        self.health_port = health_port
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
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
        if self.reflection:
            reflection.enable_server_reflection([*self.service_names, reflection.SERVICE_NAME], self.server)
        # Port 0 picks a free port; the bound ones are kept (tests).
        self.port = self.server.add_secure_port(f"{self.host}:{self.port}", self.tls.credentials)
        self.health_port = self.health_server.add_insecure_port(f"{self.host}:{self.health_port}")
        await self.server.start()
        await self.health_server.start()
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
        await self.health_server.stop(None)


def install_shutdown_handlers(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set the event so the process drains work before exiting."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
