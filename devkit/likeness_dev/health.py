"""Readiness probes for our processes. Each returns None when ready, otherwise why not (for messages)."""

from __future__ import annotations

from enum import StrEnum

import httpx

from likeness_dev.ports import LOOPBACK, is_listening


class Probe(StrEnum):
    GRPC = "grpc"  # grpc.health.v1 Check(service="") == SERVING, on the plaintext health port
    READYZ = "readyz"  # HTTP GET /readyz == 200 (the gateway)
    HEALTHZ = "healthz"  # HTTP GET /healthz == 200 on the metrics port (workers)
    TCP = "tcp"  # accepts connections (infrastructure servers once started)


def check_grpc(port: int, timeout: float = 1.0) -> str | None:
    """Asks a service's health port (`LIKENESS_HEALTH_PORT`), as Kubernetes' gRPC probes do: in plaintext
    and without a certificate. The service port itself is mutual TLS only and would refuse this."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as error:
            return f"gRPC health check failed: {error.code().name}"
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        return f"gRPC health status {health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)}"
    return None


def check_http(port: int, path: str, timeout: float = 1.0) -> str | None:
    try:
        response = httpx.get(f"http://{LOOPBACK}:{port}{path}", timeout=timeout)
    except httpx.HTTPError as error:
        return f"GET {path}: {type(error).__name__}"
    if response.status_code != 200:
        return f"GET {path} answered {response.status_code}"
    return None


def check(probe: Probe, port: int, timeout: float = 1.0) -> str | None:
    """Run one probe against 127.0.0.1:`port`."""
    if probe is Probe.GRPC:
        return check_grpc(port, timeout)
    if probe is Probe.READYZ:
        return check_http(port, "/readyz", timeout)
    if probe is Probe.HEALTHZ:
        return check_http(port, "/healthz", timeout)
    return None if is_listening(port, timeout=timeout) else "not accepting connections"
