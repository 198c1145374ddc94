"""`GrpcServer`: mutual TLS only, caller authorization per method, health alone on a plaintext port, and
certificates renewed on disk served to new handshakes without a restart. Real gRPC servers and channels
on loopback, with certificates of a test CA (`dev_ca`) and of a CA nobody trusts (`foreign_ca`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from likeness.audit import CallAudit
from likeness.grpc_callers import CALLER_NOT_ALLOWED, GATEWAY, UNKNOWN_METHOD, caller_table
from likeness.grpc_server import GrpcServer
from likeness.grpc_tls import ReloadingServerCredentials, TlsMaterial, TlsMaterialError, secure_channel
from likeness.rpc_errors import error_code
from likeness.v1 import retention_pb2, retention_pb2_grpc
from likeness_dev.dev_pki import DevCertificateAuthority

SERVICE = retention_pb2.DESCRIPTOR.services_by_name["RetentionService"]
GET_SUBJECT = f"/{SERVICE.full_name}/GetSubject"
CALLERS = caller_table(
    SERVICE,
    {method.name: ({GATEWAY} if method.name != "Sweep" else set()) for method in SERVICE.methods},
)


class TinyRetention(retention_pb2_grpc.RetentionServiceServicer):
    async def GetSubject(self, request: Any, context: Any) -> retention_pb2.GetSubjectResponse:
        return retention_pb2.GetSubjectResponse(subject=retention_pb2.Subject(id="sub_answered"))

    async def Sweep(self, request: Any, context: Any) -> retention_pb2.SweepResponse:
        return retention_pb2.SweepResponse()


@dataclass
class Served:
    server: GrpcServer
    tls_dir: Path
    denied: list[tuple[str, str]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


@pytest.fixture
async def served(
    dev_ca: DevCertificateAuthority, tmp_path: Path, server_process: None
) -> AsyncIterator[Served]:
    tls_dir = dev_ca.issue("retention").write(tmp_path / "retention-tls")
    denied: list[tuple[str, str]] = []

    async def on_denied(peer: str, method: str) -> None:
        denied.append((peer, method))

    server = GrpcServer(
        0,
        [SERVICE.full_name],
        {"always": lambda: True},
        tls=ReloadingServerCredentials(tls_dir),
        callers=CALLERS,
        health_port=0,
        on_denied=on_denied,
        host="127.0.0.1",
        grace=0,
    )
    retention_pb2_grpc.add_RetentionServiceServicer_to_server(TinyRetention(), server.server)
    await server.start()
    try:
        yield Served(server, tls_dir, denied)
    finally:
        await server.stop()


def _channel(address: str, material: TlsMaterial, server_identity: str = "retention") -> grpc.aio.Channel:
    # A channel of its own connection: gRPC would otherwise share one with an earlier channel's handshake.
    return secure_channel(address, material, server_identity, options=[("grpc.use_local_subchannel_pool", 1)])


async def _get_subject(channel: grpc.aio.Channel) -> retention_pb2.GetSubjectResponse:
    stub = retention_pb2_grpc.RetentionServiceStub(channel)
    response: retention_pb2.GetSubjectResponse = await stub.GetSubject(
        retention_pb2.GetSubjectRequest(tenant="acme", subject_id="sub_x"), timeout=5
    )
    return response


async def _refusal(call: Callable[[], Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call()
    return caught.value


async def test_the_right_caller_is_served(served: Served, dev_ca: DevCertificateAuthority) -> None:
    async with _channel(served.address, dev_ca.issue(GATEWAY).material) as channel:
        assert (await _get_subject(channel)).subject.id == "sub_answered"
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE.full_name), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert served.denied == []


async def test_callers_without_a_certificate_of_our_ca_are_refused_at_the_handshake(
    served: Served, dev_ca: DevCertificateAuthority, foreign_ca: DevCertificateAuthority
) -> None:
    # No certificate at all (the channel still trusts our CA, so only the client side is missing).
    no_certificate = grpc.aio.secure_channel(
        served.address,
        grpc.ssl_channel_credentials(dev_ca.ca_pem),
        options=[("grpc.ssl_target_name_override", "retention")],
    )
    # A gateway certificate, signed by a CA nobody here trusts.
    forged = foreign_ca.issue(GATEWAY, trusted_ca_pem=dev_ca.ca_pem).material
    plaintext = grpc.aio.insecure_channel(served.address)
    for channel in (no_certificate, _channel(served.address, forged), plaintext):
        async with channel:
            refusal = await _refusal(lambda channel=channel: _get_subject(channel))
            assert refusal.code() == grpc.StatusCode.UNAVAILABLE
    assert served.denied == [], "refused before any method was reached"


async def test_another_identity_is_denied_and_reported(
    served: Served, dev_ca: DevCertificateAuthority
) -> None:
    async with _channel(served.address, dev_ca.issue("ingest").material) as channel:
        refusal = await _refusal(lambda: _get_subject(channel))
    assert refusal.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_code(refusal) == CALLER_NOT_ALLOWED
    assert served.denied == [("ingest", GET_SUBJECT)]


async def test_a_method_nobody_may_call_and_an_unknown_method_are_denied(
    served: Served, dev_ca: DevCertificateAuthority
) -> None:
    async with _channel(served.address, dev_ca.issue(GATEWAY).material) as channel:
        stub = retention_pb2_grpc.RetentionServiceStub(channel)
        sweep = await _refusal(lambda: stub.Sweep(retention_pb2.SweepRequest(), timeout=5))
        unknown = channel.unary_unary("/likeness.v1.RetentionService/DropAllTables")
        unknown_refusal = await _refusal(lambda: unknown(b"", timeout=5))
        # Reflection is off unless asked for (production never asks): denied like any unknown method.
        reflection = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
        # No request message: the refusal needs none, and a write in flight when it comes could make grpc.aio
        # report its own INTERNAL instead (likeness.rpc_errors.status_lost_to_a_late_write).
        reflection_refusal = await _refusal(lambda: reflection(iter([]), timeout=5).read())
    for refusal in (sweep, unknown_refusal, reflection_refusal):
        assert refusal.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_code(refusal) == CALLER_NOT_ALLOWED
    assert served.denied == [
        (GATEWAY, f"/{SERVICE.full_name}/Sweep"),
        (GATEWAY, UNKNOWN_METHOD),  # the caller's own text never reaches a record
        (GATEWAY, UNKNOWN_METHOD),
    ]


async def test_the_health_port_answers_health_in_plaintext_and_nothing_else(served: Served) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served.server.health_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        refusal = await _refusal(lambda: _get_subject(channel))
    assert refusal.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_certificate_renewed_on_disk_serves_new_handshakes_without_a_restart(
    served: Served, dev_ca: DevCertificateAuthority
) -> None:
    gateway = dev_ca.issue(GATEWAY).material
    renewed_name = "retention-renewed"  # only the renewed certificate carries this name
    async with _channel(served.address, gateway, renewed_name) as before:
        assert (await _refusal(lambda: _get_subject(before))).code() == grpc.StatusCode.UNAVAILABLE
    dev_ca.issue("retention", dns_names=[renewed_name]).write(served.tls_dir)
    async with _channel(served.address, gateway, renewed_name) as after:
        assert (await _get_subject(after)).subject.id == "sub_answered"


async def test_a_new_ca_rolls_out_without_a_restart(
    served: Served, dev_ca: DevCertificateAuthority, tmp_path: Path
) -> None:
    """A CA rotation: the server first trusts both CAs and serves a certificate of the new one, so callers
    of either CA get through while they are renewed one by one."""
    new_ca = DevCertificateAuthority.create("renewed test CA")
    both = dev_ca.ca_pem + new_ca.ca_pem
    new_ca.issue("retention", trusted_ca_pem=both).write(served.tls_dir)
    old_caller = dev_ca.issue(GATEWAY, trusted_ca_pem=both).material
    new_caller = new_ca.issue(GATEWAY).material  # trusts the new CA only: needs the new server certificate
    for material in (old_caller, new_caller):
        async with _channel(served.address, material) as channel:
            assert (await _get_subject(channel)).subject.id == "sub_answered"


async def test_a_half_written_renewal_keeps_the_current_certificate(
    served: Served, dev_ca: DevCertificateAuthority
) -> None:
    # The key of one certificate beside another certificate: what a reader may see mid-renewal.
    (served.tls_dir / "tls.key").write_bytes(dev_ca.issue("retention").private_key_pem)
    async with _channel(served.address, dev_ca.issue(GATEWAY).material) as channel:
        assert (await _get_subject(channel)).subject.id == "sub_answered"


async def test_a_server_without_tls_material_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(TlsMaterialError, match="LIKENESS_TLS_DIR"):
        ReloadingServerCredentials("")
    with pytest.raises(TlsMaterialError, match="missing TLS file"):
        ReloadingServerCredentials(tmp_path)


def test_a_caller_table_names_every_method_once_and_only_our_identities() -> None:
    every = {method.name: {GATEWAY} for method in SERVICE.methods}
    missing = {name: callers for name, callers in every.items() if name != "EraseSubject"}
    with pytest.raises(ValueError, match="undecided for \\['EraseSubject'\\]"):
        caller_table(SERVICE, missing)
    with pytest.raises(ValueError, match="not methods: \\['DropAllTables'\\]"):
        caller_table(SERVICE, every | {"DropAllTables": {GATEWAY}})
    with pytest.raises(ValueError, match="not identities: \\['mallory'\\]"):
        caller_table(SERVICE, every | {"EraseSubject": {"mallory"}})


def test_a_refusal_record_holds_an_identity_and_a_method_only() -> None:
    audit = CallAudit(bus=None)  # type: ignore[arg-type]  # building a record needs no bus
    record = audit.build("trainer-worker", GET_SUBJECT)
    assert (record.actor, record.resource_id, record.outcome) == (
        "trainer-worker",
        GET_SUBJECT,
        "permission_denied",
    )
    assert (record.tenant, record.subject_hmac) == ("", "")
    for peer, method in [("Jane Doe", GET_SUBJECT), ("gateway", "/x/jane.doe@example.com"), ("gateway", "x")]:
        with pytest.raises(ValueError, match="caller identity and gRPC method only"):
            audit.build(peer, method)
