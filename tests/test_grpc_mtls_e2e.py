"""Mutual TLS and caller authorization on every gRPC method of every service of the real stack.

The matrix comes from the services' own tables (`<service>.callers.CALLERS`, one row per method of the
proto): every method is called with no client certificate, with a certificate of a CA nobody trusts, in
plaintext, and with the certificate of every identity. The first three never get past the handshake; an
identity outside the method's row is refused with PERMISSION_DENIED (and audited); the callers in the row
pass the TLS and caller checks, whatever the service then answers a request without an end user's token.

Also here: certificates renewed on disk are served to new handshakes without a restart, a service without
its certificate does not start, production refuses a plaintext backend address, and the health port
answers health and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import nats
import pytest
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ingest import callers as ingest_callers
from likeness.audit import CallAudit
from likeness.bus import AUDIT_STREAM
from likeness.grpc_callers import CALLER_NOT_ALLOWED, IDENTITIES, CallerTable
from likeness.grpc_tls import TlsMaterial, secure_channel
from likeness.provisioning import CALL_DENIED_AUDIT
from likeness.rpc_errors import error_code
from likeness.v1 import events_pb2
from likeness_dev.dev_pki import DevCertificateAuthority
from likeness_dev.ports import LOOPBACK, free_port
from likeness_dev.stack import DevStack
from renderer import callers as renderer_callers
from retention import callers as retention_callers
from trainer import callers as trainer_callers

TABLES: dict[str, tuple[ServiceDescriptor, CallerTable]] = {
    "retention": (retention_callers.SERVICE, retention_callers.CALLERS),
    "ingest": (ingest_callers.SERVICE, ingest_callers.CALLERS),
    "trainer": (trainer_callers.SERVICE, trainer_callers.CALLERS),
    "renderer": (renderer_callers.SERVICE, renderer_callers.CALLERS),
}
#: How a refusal at the TLS layer reads: the handshake failed, no call reached the service.
HANDSHAKE_REFUSED = grpc.StatusCode.UNAVAILABLE
#: A connection (and handshake) of the channel's own, never one shared with an earlier channel.
OWN_CONNECTION = ("grpc.use_local_subchannel_pool", 1)


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    machine_code: str | None

    @property
    def refused_as_caller(self) -> bool:
        return self.code == grpc.StatusCode.PERMISSION_DENIED and self.machine_code == CALLER_NOT_ALLOWED


def _methods(service: ServiceDescriptor) -> Iterator[tuple[str, MethodDescriptor]]:
    for method in service.methods:
        yield f"/{service.full_name}/{method.name}", method


async def _call(channel: grpc.aio.Channel, name: str, method: MethodDescriptor) -> Outcome:
    """Calls `name` with an empty request (an empty request stream for client streaming)."""
    try:
        if method.client_streaming:
            call = channel.stream_unary(name)(timeout=10)
            # Closing the stream of a call already ended (a refused handshake) fails; its status says why.
            with contextlib.suppress(Exception):
                await call.done_writing()
            await call
        elif method.server_streaming:
            async for _ in channel.unary_stream(name)(b"", timeout=10):
                pass
        else:
            await channel.unary_unary(name)(b"", timeout=10)
    except grpc.aio.AioRpcError as error:
        return Outcome(error.code(), error_code(error))
    return Outcome(grpc.StatusCode.OK, None)


def _channel(address: str, material: TlsMaterial, server_identity: str) -> grpc.aio.Channel:
    return secure_channel(address, material, server_identity, options=[OWN_CONNECTION])


def _without_client_certificate(address: str, stack: DevStack, server_identity: str) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(
        address,
        grpc.ssl_channel_credentials(stack.pki.ca_pem),
        options=[("grpc.ssl_target_name_override", server_identity), OWN_CONNECTION],
    )


@pytest.fixture(scope="module")
def foreign(foreign_ca: DevCertificateAuthority, stack: DevStack) -> TlsMaterial:
    """The gateway's name on a certificate of another CA (trusting the stack's, to reach the handshake)."""
    return foreign_ca.issue("gateway", trusted_ca_pem=stack.pki.ca_pem).material


@pytest.mark.parametrize("service_name", list(TABLES))
async def test_every_method_refuses_callers_without_a_certificate_of_the_stack_s_ca(
    stack: DevStack, foreign: TlsMaterial, service_name: str
) -> None:
    address = stack.services[service_name].address
    service, _ = TABLES[service_name]
    openers: dict[str, Callable[[], grpc.aio.Channel]] = {
        "no client certificate": lambda: _without_client_certificate(address, stack, service_name),
        "a certificate of another CA": lambda: _channel(address, foreign, service_name),
        "plaintext": lambda: grpc.aio.insecure_channel(address, options=[OWN_CONNECTION]),
    }
    refused: dict[tuple[str, str], grpc.StatusCode] = {}
    for name, method in _methods(service):
        for how, open_channel in openers.items():
            async with open_channel() as channel:
                refused[(name, how)] = (await _call(channel, name, method)).code
    assert refused == dict.fromkeys(refused, HANDSHAKE_REFUSED)
    assert len(refused) == len(service.methods) * len(openers)


@pytest.mark.parametrize("service_name", list(TABLES))
async def test_every_method_admits_only_the_identities_of_its_row(stack: DevStack, service_name: str) -> None:
    address = stack.services[service_name].address
    service, table = TABLES[service_name]
    wrong: list[tuple[str, str, Outcome]] = []
    checked = 0
    for identity in sorted(IDENTITIES):
        async with _channel(address, stack.pki.issue(identity).material, service_name) as channel:
            for name, method in _methods(service):
                outcome = await _call(channel, name, method)
                checked += 1
                if identity in table[name]:
                    # Past TLS and the caller check; the service may still refuse a call without a token.
                    if outcome.code == HANDSHAKE_REFUSED or outcome.refused_as_caller:
                        wrong.append((identity, name, outcome))
                elif not outcome.refused_as_caller:
                    wrong.append((identity, name, outcome))
    assert wrong == []
    assert checked == len(IDENTITIES) * len(service.methods)


async def test_a_refused_call_leaves_an_audit_record_naming_caller_and_method(stack: DevStack) -> None:
    export = f"/{ingest_callers.SERVICE.full_name}/ExportPhotos"
    method = ingest_callers.SERVICE.methods_by_name["ExportPhotos"]
    worker = stack.pki.issue("trainer-worker").material  # a GPU worker after the decrypted crops
    async with _channel(stack.services["ingest"].address, worker, "ingest") as channel:
        assert (await _call(channel, export, method)).refused_as_caller
    connection = await nats.connect(stack.infra.endpoints.nats_url)
    try:
        message = await connection.jetstream().get_last_msg(AUDIT_STREAM, CALL_DENIED_AUDIT)
    finally:
        await connection.close()
    record = events_pb2.AuditRecord.FromString(message.data or b"")
    assert (record.action, record.actor, record.resource_id, record.outcome) == (
        CallAudit.ACTION,
        "trainer-worker",
        export,
        "permission_denied",
    )
    assert (record.tenant, record.subject_hmac) == ("", ""), "nothing of a tenant or a person"


async def _eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def _health_over_tls(address: str, material: TlsMaterial, server_identity: str) -> bool:
    async with _channel(address, material, server_identity) as channel:
        try:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.aio.AioRpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


async def test_certificates_renewed_on_disk_are_used_without_a_restart(stack: DevStack) -> None:
    retention = stack.services["retention"]
    pid = retention.process.pid
    gateway = stack.pki.issue("gateway").material
    renewed_name = "retention-renewed"  # only the renewed certificate carries this name
    assert not await _health_over_tls(retention.address, gateway, renewed_name)

    stack.pki.issue("retention", dns_names=[renewed_name]).write(stack.tls_dir("retention"))
    assert await _health_over_tls(retention.address, gateway, renewed_name), "the next handshake"
    # The gateway renews its own certificate too, and keeps reaching every backend with it.
    stack.pki.issue("gateway").write(stack.tls_dir("gateway"))

    async def gateway_ready() -> bool:
        async with httpx.AsyncClient(timeout=5) as http:
            return (await http.get(f"{stack.gateway_url}/readyz")).status_code == 200

    await _eventually(gateway_ready, "the gateway to be ready with its renewed certificate")
    assert retention.process.pid == pid, "no restart"
    assert retention.process.running


@pytest.mark.parametrize("service_name", list(TABLES))
async def test_the_health_port_answers_health_in_plaintext_and_nothing_else(
    stack: DevStack, service_name: str
) -> None:
    service = stack.services[service_name]
    descriptor, _ = TABLES[service_name]
    async with grpc.aio.insecure_channel(f"{LOOPBACK}:{service.health_port}") as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        outcomes = {name: (await _call(channel, name, method)).code for name, method in _methods(descriptor)}
    assert outcomes == dict.fromkeys(outcomes, grpc.StatusCode.UNIMPLEMENTED)


def _run(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_service_without_its_certificate_does_not_start(stack: DevStack) -> None:
    env: dict[str, Any] = dict(stack.services["retention"].env)
    env.pop("LIKENESS_TLS_DIR")
    env |= {"LIKENESS_GRPC_PORT": str(free_port()), "LIKENESS_HEALTH_PORT": str(free_port())}
    env["LIKENESS_METRICS_PORT"] = str(free_port())
    finished = _run("retention", env)
    assert finished.returncode != 0
    assert "LIKENESS_TLS_DIR is not set" in finished.stdout + finished.stderr


def test_production_refuses_a_plaintext_backend_address(stack: DevStack) -> None:
    env = dict(stack.services["gateway"].env) | {
        "LIKENESS_ENV": "production",
        "LIKENESS_RETENTION_ADDR": f"http://{stack.services['retention'].address}",
        "LIKENESS_HTTP_PORT": str(free_port()),
        "LIKENESS_METRICS_PORT": str(free_port()),
    }
    finished = _run("gateway", env)
    assert finished.returncode != 0
    assert "LIKENESS_RETENTION_ADDR must be host:port" in finished.stdout + finished.stderr
