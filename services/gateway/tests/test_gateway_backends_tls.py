"""The gateway's channels to its backends: mutual TLS with the gateway's certificate, only to a server
holding the backend's own certificate, and a certificate renewed on disk used for new calls without a
restart while calls in flight finish. Real gRPC servers on loopback with certificates of the tests' CA."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from gateway.backends import Backends
from gateway.config import GatewaySettings
from likeness.grpc_tls import ClientTls, TlsMaterialError, static_server_credentials
from likeness.v1 import retention_pb2, retention_pb2_grpc
from likeness_dev.dev_pki import DevCertificateAuthority


class SerialsSeen(retention_pb2_grpc.RetentionServiceServicer):
    """Answers GetSubject with nothing, remembering the serial number of each caller's certificate."""

    def __init__(self) -> None:
        self.serials: list[int] = []

    async def GetSubject(self, request: Any, context: Any) -> retention_pb2.GetSubjectResponse:
        pem = context.auth_context()["x509_pem_cert"][0]
        self.serials.append(x509.load_pem_x509_certificate(pem).serial_number)
        return retention_pb2.GetSubjectResponse()


@dataclass
class Backend:
    address: str
    servicer: SerialsSeen
    health: HealthServicer


@dataclass
class Clock:
    now: float = 0.0
    ticks: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now


async def _serve(dev_ca: DevCertificateAuthority, identity: str) -> tuple[grpc.aio.Server, Backend]:
    server = grpc.aio.server()
    servicer, health = SerialsSeen(), HealthServicer()
    retention_pb2_grpc.add_RetentionServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_secure_port("127.0.0.1:0", static_server_credentials(dev_ca.issue(identity).material))
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, Backend(f"127.0.0.1:{port}", servicer, health)


@pytest.fixture
async def retention(dev_ca: DevCertificateAuthority, server_process: None) -> AsyncIterator[Backend]:
    server, backend = await _serve(dev_ca, "retention")
    yield backend
    await server.stop(None)


def _backends(tls_dir: Path, retention_address: str, clock: Clock) -> Backends:
    addresses = dict.fromkeys(("retention", "ingest", "trainer", "renderer"), retention_address)
    return Backends(
        ClientTls(tls_dir), addresses, timeout=5, stream_timeout=5, readiness_timeout=2, monotonic=clock
    )


async def _get_subject(backends: Backends) -> None:
    await backends.retention.GetSubject(retention_pb2.GetSubjectRequest(tenant="acme"), timeout=5)


async def test_a_renewed_certificate_is_used_for_new_calls_while_calls_in_flight_finish(
    retention: Backend, dev_ca: DevCertificateAuthority, tmp_path: Path
) -> None:
    first = dev_ca.issue("gateway")
    first.write(tmp_path)
    clock = Clock()
    backends = _backends(tmp_path, retention.address, clock)
    try:
        await _get_subject(backends)
        assert retention.servicer.serials == [first.serial_number]
        # A call in flight on the first channel: a stream of health changes.
        watch = health_pb2_grpc.HealthStub(backends.channels["retention"]).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING

        renewed = dev_ca.issue("gateway")
        renewed.write(tmp_path)
        await _get_subject(backends)  # the files are not looked at again before their interval
        clock.now += 60
        await _get_subject(backends)
        assert retention.servicer.serials == [first.serial_number] * 2 + [renewed.serial_number]

        await retention.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING, "not cut"
        watch.cancel()
    finally:
        await backends.close()


async def test_a_half_written_renewal_keeps_the_current_certificate(
    retention: Backend, dev_ca: DevCertificateAuthority, tmp_path: Path
) -> None:
    current = dev_ca.issue("gateway")
    current.write(tmp_path)
    clock = Clock()
    backends = _backends(tmp_path, retention.address, clock)
    try:
        (tmp_path / "tls.key").write_bytes(dev_ca.issue("gateway").private_key_pem)  # not this certificate's
        clock.now += 60
        await _get_subject(backends)
        assert retention.servicer.serials == [current.serial_number]
    finally:
        await backends.close()


async def test_a_server_with_another_identity_s_certificate_is_refused(
    dev_ca: DevCertificateAuthority, tmp_path: Path, server_process: None
) -> None:
    """Whoever answers at retention's address must hold retention's certificate, not just any of ours."""
    server, impostor = await _serve(dev_ca, "ingest")
    dev_ca.issue("gateway").write(tmp_path)
    backends = _backends(tmp_path, impostor.address, Clock())
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _get_subject(backends)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert impostor.servicer.serials == []
        assert await backends.readiness() == dict.fromkeys(
            ("retention", "ingest", "trainer", "renderer"), False
        )
    finally:
        await backends.close()
        await server.stop(None)


def test_the_gateway_does_not_start_without_its_certificate(tmp_path: Path) -> None:
    with pytest.raises(TlsMaterialError, match="LIKENESS_TLS_DIR"):
        Backends.connect(GatewaySettings(tls_dir=""))
    with pytest.raises(TlsMaterialError, match="missing TLS file"):
        Backends.connect(GatewaySettings(tls_dir=str(tmp_path)))


@pytest.mark.parametrize("address", ["http://retention:50051", "h2c://retention:50051", ""])
def test_production_refuses_a_plaintext_backend_address(address: str) -> None:
    with pytest.raises(ValueError, match="LIKENESS_RETENTION_ADDR must be host:port"):
        GatewaySettings(env="production", retention_addr=address)


def test_production_takes_grpc_targets() -> None:
    for address in ("retention:50051", "dns:///retention.likeness.svc:50051"):
        # Other production settings are missing here: only the address must not be among the problems.
        with pytest.raises(ValueError, match="refusing production settings") as refused:
            GatewaySettings(env="production", retention_addr=address)
        assert "LIKENESS_RETENTION_ADDR" not in str(refused.value)
