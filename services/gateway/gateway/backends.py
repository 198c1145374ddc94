"""The four gRPC backends: a channel and stub each, opened at startup, closed at shutdown."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.config import GatewaySettings
from likeness.grpc_telemetry import client_interceptors
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
_CHANNEL_OPTIONS = [
    # Rendered images come back in chunks well under this; keep a bound on what a backend can make us hold.
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
]


@dataclass
class Backends:
    retention: RetentionServiceAsyncStub
    ingest: IngestServiceAsyncStub
    trainer: TrainerServiceAsyncStub
    renderer: RendererServiceAsyncStub
    channels: dict[str, grpc.aio.Channel]
    timeout: float
    stream_timeout: float
    readiness_timeout: float

    @classmethod
    def connect(cls, settings: GatewaySettings) -> Backends:
        """Channels connect lazily, so the gateway starts (not ready) while a backend is still down."""
        addresses = {
            "retention": settings.retention_addr,
            "ingest": settings.ingest_addr,
            "trainer": settings.trainer_addr,
            "renderer": settings.renderer_addr,
        }
        channels = {
            # The interceptors carry the request's trace into each backend (traceparent metadata).
            name: grpc.aio.insecure_channel(
                addr, options=_CHANNEL_OPTIONS, interceptors=client_interceptors()
            )
            for name, addr in addresses.items()
        }
        return cls(
            retention=retention_pb2_grpc.RetentionServiceStub(channels["retention"]),
            ingest=ingest_pb2_grpc.IngestServiceStub(channels["ingest"]),
            trainer=trainer_pb2_grpc.TrainerServiceStub(channels["trainer"]),
            renderer=renderer_pb2_grpc.RendererServiceStub(channels["renderer"]),
            channels=channels,
            timeout=settings.grpc_timeout_seconds,
            stream_timeout=settings.stream_timeout_seconds,
            readiness_timeout=settings.readiness_timeout_seconds,
        )

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
        await asyncio.gather(*(channel.close(grace=None) for channel in self.channels.values()))
