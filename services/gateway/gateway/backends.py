"""The four gRPC backends: a mutual-TLS channel and stub each, opened at startup, closed at shutdown.

Each channel presents the gateway's certificate (`LIKENESS_TLS_DIR`) and accepts only a server holding the
certificate of the backend it means to reach (`likeness.grpc_tls`: the identity is checked, not the address
dialled). gRPC Python cannot swap a live channel's certificate, so when the files on disk change the
channels are rebuilt: new calls take the new ones, calls in flight finish on the old ones, which close once
drained (or after the longest deadline a call may have).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.config import GatewaySettings
from likeness.grpc_telemetry import client_interceptors
from likeness.grpc_tls import ClientTls
from likeness.grpc_user_tokens import user_token_interceptors
from likeness.v1 import ingest_pb2_grpc, renderer_pb2_grpc, retention_pb2_grpc, trainer_pb2_grpc

if TYPE_CHECKING:
    from likeness.v1.ingest_pb2_grpc import IngestServiceAsyncStub
    from likeness.v1.renderer_pb2_grpc import RendererServiceAsyncStub
    from likeness.v1.retention_pb2_grpc import RetentionServiceAsyncStub
    from likeness.v1.trainer_pb2_grpc import TrainerServiceAsyncStub

#: Health check service names, as each service registers them.
SERVICE_NAMES = {
    "retention": "likeness.v1.RetentionService",
    "ingest": "likeness.v1.IngestService",
    "trainer": "likeness.v1.TrainerService",
    "renderer": "likeness.v1.RendererService",
}
#: The identity each backend's certificate must carry (its DNS SAN): the gateway talks to no one else.
BACKEND_IDENTITIES = {
    "retention": "retention",
    "ingest": "ingest",
    "trainer": "trainer",
    "renderer": "renderer",
}
_CHANNEL_OPTIONS = [
    # Rendered images come back in chunks well under this; keep a bound on what a backend can make us hold.
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
]
#: How often the certificate files are looked at (three stats), at most: on a call, never in the background.
TLS_CHECK_SECONDS = 1.0


def _channel_interceptors() -> list[Any]:
    """What every backend call passes through, in order."""
    # The tracing interceptors carry the request's trace into each backend (traceparent metadata).
    return [*client_interceptors(), *user_token_interceptors()]  # + the caller's token (authorization)


@dataclass(frozen=True)
class _Channels:
    """One generation of channels and their stubs, all built from the same certificate."""

    retention: RetentionServiceAsyncStub
    ingest: IngestServiceAsyncStub
    trainer: TrainerServiceAsyncStub
    renderer: RendererServiceAsyncStub
    channels: dict[str, grpc.aio.Channel]

    @classmethod
    def open(cls, tls: ClientTls, addresses: dict[str, str]) -> _Channels:
        """Channels connect lazily, so the gateway starts (not ready) while a backend is still down."""
        channels = {
            name: tls.channel(address, BACKEND_IDENTITIES[name], _CHANNEL_OPTIONS, _channel_interceptors())
            for name, address in addresses.items()
        }
        return cls(
            retention=retention_pb2_grpc.RetentionServiceStub(channels["retention"]),
            ingest=ingest_pb2_grpc.IngestServiceStub(channels["ingest"]),
            trainer=trainer_pb2_grpc.TrainerServiceStub(channels["trainer"]),
            renderer=renderer_pb2_grpc.RendererServiceStub(channels["renderer"]),
            channels=channels,
        )


class Backends:
    def __init__(
        self,
        tls: ClientTls,
        addresses: dict[str, str],
        *,
        timeout: float,
        stream_timeout: float,
        readiness_timeout: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self.readiness_timeout = readiness_timeout
        self._tls = tls
        self._addresses = addresses
        self._monotonic = monotonic
        self._current = _Channels.open(tls, addresses)
        self._next_tls_check = monotonic() + TLS_CHECK_SECONDS
        self._draining: list[_Channels] = []
        self._drains: set[asyncio.Task[None]] = set()

    @classmethod
    def connect(cls, settings: GatewaySettings) -> Backends:
        """Refuses to start without the gateway's TLS material (there is no plaintext path)."""
        addresses = {
            "retention": settings.retention_addr,
            "ingest": settings.ingest_addr,
            "trainer": settings.trainer_addr,
            "renderer": settings.renderer_addr,
        }
        return cls(
            ClientTls(settings.tls_dir),
            addresses,
            timeout=settings.grpc_timeout_seconds,
            stream_timeout=settings.stream_timeout_seconds,
            readiness_timeout=settings.readiness_timeout_seconds,
        )

    # The stubs of the current channels: read them per call (a rotation replaces them).

    @property
    def retention(self) -> RetentionServiceAsyncStub:
        return self._channels().retention

    @property
    def ingest(self) -> IngestServiceAsyncStub:
        return self._channels().ingest

    @property
    def trainer(self) -> TrainerServiceAsyncStub:
        return self._channels().trainer

    @property
    def renderer(self) -> RendererServiceAsyncStub:
        return self._channels().renderer

    @property
    def channels(self) -> dict[str, grpc.aio.Channel]:
        return self._channels().channels

    def _channels(self) -> _Channels:
        now = self._monotonic()
        if now >= self._next_tls_check:
            self._next_tls_check = now + TLS_CHECK_SECONDS
            if self._tls.reload_if_changed():
                self._rotate()
        return self._current

    def _rotate(self) -> None:
        """New channels from the renewed certificate; the old ones drain their calls, then close."""
        old, self._current = self._current, _Channels.open(self._tls, self._addresses)
        self._draining.append(old)
        task = asyncio.get_running_loop().create_task(self._drain(old))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _drain(self, old: _Channels) -> None:
        # A call started on the old channels has at most its deadline left.
        await self._close(old, grace=max(self.timeout, self.stream_timeout))
        self._draining.remove(old)

    @staticmethod
    async def _close(channels: _Channels, grace: float | None) -> None:
        await asyncio.gather(*(channel.close(grace=grace) for channel in channels.channels.values()))

    async def readiness(self) -> dict[str, bool]:
        """Whether each backend answers its health check with SERVING."""
        names = list(self.channels)
        results = await asyncio.gather(*(self._serving(name) for name in names))
        return dict(zip(names, results, strict=True))

    async def _serving(self, name: str) -> bool:
        stub = health_pb2_grpc.HealthStub(self.channels[name])
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAMES[name])
        try:
            response = await stub.Check(request, timeout=self.readiness_timeout)
        except grpc.aio.AioRpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    async def close(self) -> None:
        await asyncio.gather(*(self._close(old, grace=None) for old in [self._current, *self._draining]))
        await asyncio.gather(*self._drains, return_exceptions=True)
