"""The dev stack machinery: ports, settings, health probes, records and `dev down`, with stand-in services.

The real services are exercised by the end-to-end tests; here small stand-ins (put first on PYTHONPATH,
so `python -m retention` etc. run them) serve the same health endpoints, so these tests pin what the
stack gives each service and how it waits, whatever state the services are in. The servers are real.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography import x509

from likeness_dev.infra import Infra
from likeness_dev.procs import is_alive
from likeness_dev.stack import SERVICE_NAMES, DevStack, StackError, stop_recorded_stack
from likeness_dev.stackfile import read_dev_env, read_stack_file

STANDIN = textwrap.dedent(
    """
    import os, signal, sys, threading
    from concurrent import futures
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    if os.environ.get("STANDIN_FAIL"):
        print("stand-in refuses to start: " + os.environ["STANDIN_FAIL"], flush=True)
        sys.exit(3)
    paths = {"/healthz", "/metrics"}
    servers = []

    def http(port, ok_paths):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200 if self.path in ok_paths else 404)
                self.end_headers()
            def log_message(self, *args):
                pass
        server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()

    http(os.environ["LIKENESS_METRICS_PORT"], {"/healthz", "/metrics"})
    if "LIKENESS_HTTP_PORT" in os.environ:
        http(os.environ["LIKENESS_HTTP_PORT"], {"/readyz", "/healthz"})
    if "LIKENESS_HEALTH_PORT" in os.environ:  # as a real service: health alone, plaintext, on its own port
        import grpc
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        servicer = health.HealthServicer()
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        server.add_insecure_port("127.0.0.1:" + os.environ["LIKENESS_HEALTH_PORT"])
        server.start()
    print("stand-in up:", sys.argv, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    """
)


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("standins")
    (root / "standin_service.py").write_text(STANDIN)
    for module in ("retention", "ingest", "trainer", "renderer", "gateway"):
        (root / module).mkdir()
        (root / module / "__init__.py").write_text("")
        (root / module / "__main__.py").write_text("import standin_service  # noqa: F401\n")
    return root


def test_every_service_gets_its_settings_and_dev_down_stops_all(
    tmp_path: Path, standins: Path, infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIKENESS_HTTP_PORT", "1")  # as if a shell had loaded an old dev.env
    monkeypatch.delenv("LIKENESS_ENV")  # a developer's shell says nothing: the stack says development itself
    stack = DevStack.start(
        tmp_path,
        infra=infra,
        base_model="/models/stand-in",
        extra_env={"PYTHONPATH": str(standins)},
        timeout=60,
    )
    try:
        assert set(stack.services) == set(SERVICE_NAMES)
        gateway_env = stack.services["gateway"].env
        for name in ("retention", "ingest", "trainer", "renderer"):
            assert gateway_env[f"LIKENESS_{name.upper()}_ADDR"] == stack.services[name].address
        gateway_secrets = Path(gateway_env["LIKENESS_SECRETS_DIR"])
        assert (gateway_secrets / "jwt_dev_secret").read_text() == stack.jwt_secret
        metrics_ports = set()
        for service in stack.services.values():
            env = service.env
            # Part P: its own NATS user and S3 identity, never the infra's admin.
            assert env["LIKENESS_NATS_URL"] == infra.endpoints.nats_address
            assert env["LIKENESS_NATS_USER"] == service.name
            assert env["LIKENESS_ENV"] == "development", "unset means production: the stack says it"
            assert not any(
                key.endswith(("_SECRET", "_TOKEN", "_KEY")) for key in env if key.startswith("LIKENESS_")
            ), "secrets reach services as files, never in their environment"
            secret_files = [path for path in Path(env["LIKENESS_SECRETS_DIR"]).iterdir() if path.is_file()]
            secrets = {path.name: path.read_text() for path in secret_files}
            if service.name == "retention":
                assert secrets["hmac_secret"] == stack.hmac_secret
                assert len(stack.hmac_secret) >= 32
            else:
                assert "hmac_secret" not in secrets, "only retention holds the HMAC secret"
            if service.name == "gateway":  # it writes no audit record, so holds no pseudonym secret
                assert "audit_pseudonym_secret" not in secrets
            else:  # one pseudonym per person in every auditing service
                assert secrets["audit_pseudonym_secret"] == stack.audit_pseudonym_secret
                assert stack.audit_pseudonym_secret != stack.hmac_secret
            assert secrets["nats_password"] == infra.credentials(service.name).nats_password
            if service.name == "gateway":
                assert set(secrets) == {"idempotency_secret", "jwt_dev_secret", "nats_password"}, "no storage"
            else:
                assert {"s3_secret_key", "vault_token"} <= set(secrets)
                assert secrets["s3_access_key"] == infra.credentials(service.name).s3_access_key
                assert secrets["s3_secret_key"] != infra.endpoints.s3_secret_key, "not the admin's"
            assert ("LIKENESS_GRPC_PORT" in env) == (service.spec.kind == "grpc")
            assert ("LIKENESS_HEALTH_PORT" in env) == (service.spec.kind == "grpc")
            # Mutual TLS: each process with a gRPC hop holds a certificate of its own identity (issue 14, S1).
            if service.spec.kind == "worker":
                assert "LIKENESS_TLS_DIR" not in env, "workers have no gRPC hop"
            else:
                tls_dir = Path(env["LIKENESS_TLS_DIR"])
                assert tls_dir == stack.tls_dir(service.name)
                names = x509.load_pem_x509_certificate((tls_dir / "tls.crt").read_bytes()).extensions
                san = names.get_extension_for_class(x509.SubjectAlternativeName).value
                assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
                    f"spiffe://likeness/{service.name}"
                ]
                assert (tls_dir / "tls.key").stat().st_mode & 0o077 == 0
                assert (tls_dir / "ca.crt").read_bytes() == stack.pki.ca_pem
            # Whoever serves calls verifies end users' tokens; workers serve none (issue 14, part S2).
            assert (secrets.get("jwt_dev_secret") == stack.jwt_secret) == (service.spec.kind != "worker")
            assert (env.get("LIKENESS_BASE_MODEL") == "/models/stand-in") == service.spec.needs_model
            assert ("LIKENESS_HTTP_PORT" in env) == (service.name == "gateway")
            metrics_ports.add(env["LIKENESS_METRICS_PORT"])
            assert (tmp_path / ".likeness" / "logs" / f"{service.name}.log").is_file()
        assert len(metrics_ports) == len(stack.services)

        assert httpx.get(f"{stack.gateway_url}/readyz").status_code == 200
        claims = jwt.decode(stack.mint_token(), stack.jwt_secret, algorithms=["HS256"], audience="likeness")
        assert claims["tenant"] == "dev"

        dev_env = read_dev_env(tmp_path / ".likeness")
        assert dev_env["LIKENESS_GATEWAY_URL"] == stack.gateway_url
        assert dev_env["LIKENESS_ENV"] == "development", (
            "a hand-run service that loads dev.env is development"
        )
        assert jwt.decode(
            dev_env["LIKENESS_DEV_TOKEN"], stack.jwt_secret, algorithms=["HS256"], audience="likeness"
        )
        assert dev_env["LIKENESS_S3_SECRET_KEY"] == infra.endpoints.s3_secret_key
        assert (tmp_path / ".likeness" / "dev.env").stat().st_mode & 0o077 == 0

        record = read_stack_file(tmp_path / ".likeness")
        assert record is not None
        recorded = {entry["name"]: entry for entry in record["processes"]}
        assert set(recorded) == set(
            SERVICE_NAMES
        )  # the servers belong to the `infra` fixture, not this stack

        with pytest.raises(StackError, match="already running"):
            DevStack.start(tmp_path, infra=infra)

        assert stop_recorded_stack(tmp_path) is not None  # what `likeness dev down` runs
        assert not stack.tls_dir("gateway").exists(), "keys go with the stack"
        assert not any(is_alive(entry["pid"], entry["start_ticks"]) for entry in recorded.values())
        assert read_stack_file(tmp_path / ".likeness") is None
        assert infra.nats.running  # not ours to stop
    finally:
        stack.stop()


def test_a_service_that_fails_is_named_and_the_rest_is_stopped(
    tmp_path: Path, standins: Path, infra: Infra
) -> None:
    with pytest.raises(StackError) as failure:
        DevStack.start(
            tmp_path,
            infra=infra,
            services=["retention", "ingest"],
            extra_env={"PYTHONPATH": str(standins)},
            service_env={"ingest": {"STANDIN_FAIL": "no camera"}},
            timeout=60,
        )
    message = str(failure.value)
    assert message.startswith("ingest exited with code 3")
    assert "no camera" in message  # the end of its log
    assert read_stack_file(tmp_path / ".likeness") is None
    assert (
        tmp_path / ".likeness" / "logs" / "retention.log"
    ).is_file()  # started, then stopped with the rest


def test_unknown_services_are_refused(tmp_path: Path, infra: Infra) -> None:
    with pytest.raises(StackError, match="unknown service"):
        DevStack.start(tmp_path, infra=infra, services=["retention", "billing"])


def test_a_stopped_service_comes_back_on_its_port(tmp_path: Path, standins: Path, infra: Infra) -> None:
    with DevStack.start(
        tmp_path, infra=infra, services=["retention"], extra_env={"PYTHONPATH": str(standins)}, timeout=60
    ) as stack:
        retention = stack.services["retention"]
        first_pid = retention.process.pid
        stack.stop_service("retention")
        assert not retention.process.running
        stack.start_service("retention", timeout=60)
        assert retention.process.pid != first_pid
        record = json.loads((tmp_path / ".likeness" / "stack.json").read_text())
        assert record["stack_id"] == stack.stack_id
        assert record["processes"][0]["pid"] == retention.process.pid
        assert record["processes"][0]["probe"] == "grpc"
    assert not (tmp_path / ".likeness" / "stack.json").exists()


def test_an_infra_only_stack_leaves_certificates_for_hand_run_services(tmp_path: Path, infra: Infra) -> None:
    with DevStack.start(tmp_path, infra=infra, infra_only=True) as stack:
        for name in ("retention", "ingest", "trainer", "renderer", "gateway"):
            assert (stack.tls_dir(name) / "tls.crt").is_file(), name
        assert not stack.tls_dir("trainer-worker").exists(), "workers have no gRPC hop"
    assert not stack.tls_dir("retention").exists(), "keys go with the stack"
