"""The local dev stack: the infrastructure servers plus our five services as background processes.

`DevStack.start(project_dir)` is what `likeness dev up` runs, and what end-to-end tests run in a tmp dir:
state, logs and the tiny model live in `<project_dir>/.likeness/`, the processes are recorded in
`.likeness/stack.json` so `likeness dev down` (another process) can stop them all.

Every gRPC hop runs mutual TLS as in a cluster: each start makes a throwaway CA and hands each process with
a gRPC hop the certificate of its identity in `.likeness/secrets/<process>/tls/` (`LIKENESS_TLS_DIR`,
removed with the secrets); gRPC services answer the stack's probes on their plaintext health port.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from likeness.config import SECRETS_DIR_VARIABLE
from likeness_cli.models import TinyFamily
from likeness_dev import health
from likeness_dev.dev_pki import DevCertificateAuthority
from likeness_dev.health import Probe
from likeness_dev.infra import DEVELOPMENT, INFRA_SECRET_VARIABLES, NATS, S3, VAULT, Infra, start_infra
from likeness_dev.ports import LOOPBACK, free_port
from likeness_dev.procs import (
    DEFAULT_GRACE_SECONDS,
    ManagedProcess,
    is_alive,
    signal_group,
    terminate_recorded,
)
from likeness_dev.stackfile import (
    read_stack_file,
    remove_stack_files,
    secrets_dir_of,
    state_dir_of,
    write_dev_env,
    write_private,
    write_stack_file,
)
from likeness_dev.tiny_model_cache import ensure_tiny_model, tiny_identity_adapter_env, tiny_model_folder
from likeness_dev.tokens import ALL_SCOPES, DEV_TENANT, mint_dev_token
from likeness_dev.vault_identities import identity_vault_token

DEFAULT_SERVICE_TIMEOUT = 180.0


class StackError(RuntimeError):
    """The dev stack could not be started (the message says which process and quotes its log)."""


class StackSettings(BaseSettings):
    """Settings of the `likeness dev` commands themselves."""

    model_config = SettingsConfigDict(env_prefix="LIKENESS_", extra="ignore")

    base_model: str | None = None
    """A base model (folder or hub id) for trainer and renderer instead of the tiny one."""
    base_family: TinyFamily = "sd15"
    """Without base_model: which tiny model (shaped like SD 1.5 or SDXL) trainer and renderer run."""
    stack_timeout: float = DEFAULT_SERVICE_TIMEOUT
    """Seconds to wait for all services to be healthy."""


class ServiceKind(StrEnum):
    GRPC = "grpc"
    HTTP = "http"
    WORKER = "worker"


@dataclass(frozen=True)
class ServiceSpec:
    """One process of the stack: a role of a service, started as every service starts,
    `python -m <module> <role>`."""

    module: str
    role: str
    kind: ServiceKind
    needs_model: bool = False

    @property
    def name(self) -> str:
        """Process name (log file, stack.json entry): `<module>`, or `<module>-worker` for `work`."""
        return self.module if self.role == "serve" else f"{self.module}-worker"

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module, self.role]

    @property
    def address_env(self) -> str:
        """The gateway's setting for this service's address (gRPC services only)."""
        return f"LIKENESS_{self.module.upper()}_ADDR"


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("retention", "serve", ServiceKind.GRPC),
    ServiceSpec("ingest", "serve", ServiceKind.GRPC),
    ServiceSpec("trainer", "serve", ServiceKind.GRPC, needs_model=True),
    ServiceSpec("trainer", "work", ServiceKind.WORKER, needs_model=True),
    ServiceSpec("renderer", "serve", ServiceKind.GRPC, needs_model=True),
    ServiceSpec("renderer", "work", ServiceKind.WORKER, needs_model=True),
    ServiceSpec("gateway", "serve", ServiceKind.HTTP),
)
SERVICE_NAMES = tuple(spec.name for spec in SERVICES)
_PER_STACK_KEYS = frozenset(
    {
        "LIKENESS_GRPC_PORT",
        "LIKENESS_HEALTH_PORT",
        "LIKENESS_TLS_DIR",
        "LIKENESS_METRICS_PORT",
        "LIKENESS_HTTP_PORT",
        "LIKENESS_HMAC_SECRET",
        "LIKENESS_IDEMPOTENCY_SECRET",
        "LIKENESS_JWT_DEV_SECRET",
        "LIKENESS_S3_ACCESS_KEY",
        "LIKENESS_S3_SECRET_KEY",
        "LIKENESS_NATS_USER",
        "LIKENESS_NATS_PASSWORD",
        "LIKENESS_VAULT_TOKEN",
        SECRETS_DIR_VARIABLE,
        "LIKENESS_BASE_MODEL",
        "LIKENESS_GATEWAY_URL",
        "LIKENESS_DEV_TOKEN",
        *(spec.address_env for spec in SERVICES if spec.kind is ServiceKind.GRPC),
    }
)


@dataclass
class ServiceProcess:
    """One running service with its ports."""

    spec: ServiceSpec
    process: ManagedProcess
    metrics_port: int
    grpc_port: int | None = None
    http_port: int | None = None
    #: Plaintext gRPC health only (gRPC services): what the stack probes, as Kubernetes does.
    health_port: int | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)
    #: Which copy of the process this is (`DevStack.start(replicas=2)`): 1, the only one by default.
    replica: int = 1

    @property
    def name(self) -> str:
        """The process name: the spec's (`gateway`), `<spec>-<n>` for a further replica (`gateway-2`)."""
        return self.spec.name if self.replica == 1 else f"{self.spec.name}-{self.replica}"

    @property
    def identity(self) -> str:
        """Who the process is to NATS, S3, Vault and its peers: every replica of a spec is the same one."""
        return self.spec.name

    @property
    def address(self) -> str:
        """host:port of the gRPC server (gRPC services only)."""
        if self.grpc_port is None:
            raise StackError(f"{self.name} has no gRPC port")
        return f"{LOOPBACK}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}"

    @property
    def probe(self) -> tuple[Probe, int]:
        if self.health_port is not None:
            return Probe.GRPC, self.health_port
        if self.http_port is not None:
            return Probe.READYZ, self.http_port
        return Probe.HEALTHZ, self.metrics_port

    def record(self) -> dict[str, Any]:
        probe, port = self.probe
        return self.process.record() | {
            "kind": self.spec.kind.value,
            "probe": probe.value,
            "probe_port": port,
        }


def _wait_healthy(services: Sequence[ServiceProcess], timeout: float) -> None:
    """Wait until every service answers its health probe; raise StackError naming the first that fails."""
    deadline = time.monotonic() + timeout
    pending = {service.name: service for service in services}
    reasons: dict[str, str] = {}
    while pending:
        for name, service in list(pending.items()):
            if not service.process.running:
                raise StackError(
                    f"{name} exited with code {service.process.returncode} before it was healthy\n"
                    f"--- last lines of {service.process.log_path} ---\n{service.process.log_tail()}"
                )
            probe, port = service.probe
            reason = health.check(probe, port)
            if reason is None:
                del pending[name]
            else:
                reasons[name] = reason
        if pending and time.monotonic() > deadline:
            name, service = next(iter(pending.items()))
            others = f" (also not healthy: {', '.join(list(pending)[1:])})" if len(pending) > 1 else ""
            raise StackError(
                f"{name} was not healthy within {timeout:.0f}s: {reasons.get(name, 'no answer')}{others}\n"
                f"--- last lines of {service.process.log_path} ---\n{service.process.log_tail()}"
            )
        if pending:
            time.sleep(0.25)


def _stop_processes(processes: Sequence[ManagedProcess], grace: float) -> None:
    # Ask all to stop at once so their shutdowns overlap, then wait for (or kill) each.
    for process in processes:
        process.terminate()
    for process in processes:
        process.stop(grace)


class DevStack:
    """A running dev stack; create it with `DevStack.start(...)`, end it with `.stop()`."""

    def __init__(
        self,
        project_dir: Path,
        infra: Infra,
        *,
        owns_infra: bool,
        infra_only: bool,
        jwt_secret: str,
        hmac_secret: str,
        idempotency_secret: str,
    ) -> None:
        self.project_dir = project_dir
        self.state_dir = state_dir_of(project_dir)
        self.log_dir = self.state_dir / "logs"
        self.infra = infra
        self.infra_only = infra_only
        self.jwt_secret = jwt_secret
        self.hmac_secret = hmac_secret
        self.idempotency_secret = idempotency_secret
        #: The audit trail's pseudonym secret (`likeness.audit`), given to every service that audits
        #: accesses (ingest, trainer, renderer, retention), never the gateway.
        self.audit_pseudonym_secret = secrets.token_urlsafe(32)
        #: This stack's throwaway CA (its key only in memory): every gRPC hop of the stack is mutual TLS, and
        #: tests issue certificates from it (`stack.pki.issue("ingest")`) to call the services as another.
        self.pki = DevCertificateAuthority.create()
        self.services: dict[str, ServiceProcess] = {}
        self.base_model: str | None = None
        self.stack_id = uuid.uuid4().hex
        self._owns_infra = owns_infra
        self._stopped = False

    # ------------------------------------------------------------------------------------------ start

    @classmethod
    def start(
        cls,
        project_dir: Path,
        *,
        infra_only: bool = False,
        services: Sequence[str] | None = None,
        base_model: str | Path | None = None,
        base_family: TinyFamily | None = None,
        timeout: float | None = None,
        die_with_parent: bool = True,
        extra_env: Mapping[str, str] | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        infra: Infra | None = None,
        reset: bool = False,
        progress: Callable[[str], None] | None = None,
        replicas: int = 1,
    ) -> DevStack:
        """Start the stack with its state in `project_dir/.likeness/` and wait until all are healthy.

        services: names from SERVICE_NAMES to start (default all). base_model: for trainer and renderer
        (default: $LIKENESS_BASE_MODEL, else the tiny model of base_family, written once). base_family:
        sd15 or sdxl (default: $LIKENESS_BASE_FAMILY, else sd15). extra_env / service_env:
        added to every / one service's environment, last (they win). infra: use these running servers
        instead of starting new ones (they are then not stopped with the stack). reset: delete the NATS
        and S3 data of earlier runs first. die_with_parent: the kernel kills the processes if this one
        dies (tests); `likeness dev up` turns it off so they outlive it. progress: told what happens.
        replicas: processes per service (the fault suite runs 2): replica n is named `<name>-n` beyond the
        first, has the same identity, and its gateway calls replica n of each gRPC service.
        """
        say = progress or (lambda message: None)
        settings = StackSettings()
        if base_family is not None:
            settings = settings.model_copy(update={"base_family": base_family})
        project_dir = project_dir.resolve()
        state_dir = state_dir_of(project_dir)
        wanted = _choose_services(services)
        _refuse_if_running(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        if reset and infra is None:
            for data in ("nats", "s3"):
                shutil.rmtree(state_dir / data, ignore_errors=True)

        owns_infra = infra is None
        if infra is None:
            say("starting NATS JetStream, SeaweedFS S3 and OpenBao")
            infra = start_infra(state_dir, die_with_parent=die_with_parent)
        stack = cls(
            project_dir,
            infra,
            owns_infra=owns_infra,
            infra_only=infra_only,
            jwt_secret=secrets.token_urlsafe(32),
            hmac_secret=secrets.token_urlsafe(32),
            idempotency_secret=secrets.token_urlsafe(32),
        )
        try:
            stack._write_records()
            if not infra_only:
                if any(spec.needs_model for spec in wanted):
                    stack.base_model = _resolve_base_model(base_model, settings, state_dir, say)
                stack.tmp_dir.mkdir(mode=0o700, exist_ok=True)
                copies = f" ({replicas} of each)" if replicas > 1 else ""
                say(f"starting {', '.join(spec.name for spec in wanted)}{copies}")
                stack._spawn_services(wanted, die_with_parent, extra_env or {}, service_env or {}, replicas)
                stack._write_records()
                say("waiting until every service is healthy")
                _wait_healthy(list(stack.services.values()), timeout or settings.stack_timeout)
            else:  # services run by hand: LIKENESS_TLS_DIR=.likeness/secrets/<process>/tls
                for spec in wanted:
                    if spec.kind is not ServiceKind.WORKER:
                        stack.pki.issue(spec.name).write(stack.tls_dir(spec.name))
            stack._write_records(dev_env=True)
        except BaseException:
            stack.stop()
            raise
        return stack

    def _spawn_services(
        self,
        wanted: Sequence[ServiceSpec],
        die_with_parent: bool,
        extra_env: Mapping[str, str],
        service_env: Mapping[str, Mapping[str, str]],
        replicas: int = 1,
    ) -> None:
        planned: list[ServiceProcess] = []
        for replica in range(1, replicas + 1):
            for spec in wanted:
                service = ServiceProcess(
                    spec=spec,
                    process=ManagedProcess(spec.name, [], self.log_dir / f"{spec.name}.log"),
                    metrics_port=free_port(),
                    grpc_port=free_port() if spec.kind is ServiceKind.GRPC else None,
                    http_port=free_port() if spec.kind is ServiceKind.HTTP else None,
                    health_port=free_port() if spec.kind is ServiceKind.GRPC else None,
                    replica=replica,
                )
                planned.append(service)
        for service in planned:
            # Each gateway calls the gRPC services of its own replica number (in a cluster, a Service).
            addresses = {
                peer.spec.address_env: peer.address
                for peer in planned
                if peer.grpc_port and peer.replica == service.replica
            }
            service.env = self._service_env(service, addresses) | dict(extra_env)
            # service_env by spec name holds for every replica of it.
            service.env |= dict(service_env.get(service.spec.name, {}))
            service.process = ManagedProcess(
                service.name,
                service.spec.command,
                self.log_dir / f"{service.name}.log",
                env=service.env,
                cwd=self.project_dir,
                die_with_parent=die_with_parent,
            )
            self.services[service.name] = service
            service.process.start()

    def _service_env(self, service: ServiceProcess, addresses: Mapping[str, str]) -> dict[str, str]:
        # Settings that belong to one stack (ports, addresses, secrets) are never inherited: a shell
        # that loaded an old dev.env must not hand a stale value to a service we did not set it for.
        env = {key: value for key, value in os.environ.items() if key not in _PER_STACK_KEYS}
        infra_env = self.infra.endpoints.as_env()
        env |= {key: value for key, value in infra_env.items() if key not in INFRA_SECRET_VARIABLES}
        # Its own NATS user (part P: process names are identities): never the admin in the infra's URL.
        env |= {
            "LIKENESS_NATS_URL": self.infra.endpoints.nats_address,
            "LIKENESS_NATS_USER": service.identity,
        }
        env |= {
            # Every process of a dev stack runs as development, said explicitly (the default is production,
            # which refuses the dev servers' plaintext endpoints and development secrets).
            "LIKENESS_ENV": DEVELOPMENT,
            # Secrets reach each service as files, as in a cluster (mounted Secrets), and only its own.
            SECRETS_DIR_VARIABLE: str(self._write_secrets(service, infra_env)),
            "LIKENESS_METRICS_PORT": str(service.metrics_port),
            "PYTHONUNBUFFERED": "1",
            # A temp dir of this stack's own: whatever a library spills there is inside the stack's state
            # (scanned by the leak tests, removed with it) and never mixed with another stack's.
            "TMPDIR": str(self.tmp_dir),
        }
        if service.grpc_port is not None:
            env["LIKENESS_GRPC_PORT"] = str(service.grpc_port)
        if service.health_port is not None:
            env["LIKENESS_HEALTH_PORT"] = str(service.health_port)
        if service.spec.kind is not ServiceKind.WORKER:  # a gRPC hop (server or the gateway's channels)
            env["LIKENESS_TLS_DIR"] = str(self._write_tls(service))
        if service.spec.needs_model and self.base_model is not None:
            env["LIKENESS_BASE_MODEL"] = self.base_model
            if service.spec.module == "renderer":  # instant mode's adapter, on the tiny model
                env |= tiny_identity_adapter_env(self.base_model)
        if service.spec.kind is ServiceKind.HTTP:
            env |= dict(addresses)
            env["LIKENESS_HTTP_PORT"] = str(service.http_port)
        return env

    def _write_secrets(self, service: ServiceProcess, infra_env: Mapping[str, str]) -> Path:
        """The service's secrets, one file each (readable by the owner only), in a directory of its own."""
        values: dict[str, str] = {}
        if service.spec.kind is ServiceKind.HTTP:
            values |= {"idempotency_secret": self.idempotency_secret, "jwt_dev_secret": self.jwt_secret}
        else:  # every other service reads and writes encrypted data: S3 and Vault
            values |= {
                variable.removeprefix("LIKENESS_").lower(): infra_env[variable]
                for variable in INFRA_SECRET_VARIABLES
            }
        # Part P: its own NATS password and S3 identity, not the infra's admin keys.
        own = self.infra.credentials(service.identity)
        values["nats_password"] = own.nats_password
        if service.spec.kind is not ServiceKind.HTTP:
            values |= {"s3_access_key": own.s3_access_key, "s3_secret_key": own.s3_secret_key}
            # Part K: a Vault token with only this identity's policy (deploy/vault/policies), not root.
            values["vault_token"] = identity_vault_token(self.infra, service.identity)
        if service.spec.module == "retention":
            values["hmac_secret"] = self.hmac_secret
        if service.spec.kind is not ServiceKind.HTTP:  # every service that holds personal data audits it
            values["audit_pseudonym_secret"] = self.audit_pseudonym_secret
        if service.spec.kind is not ServiceKind.WORKER:
            # Whoever serves calls verifies the caller's token (the gateway, and every service again).
            # Workers serve none; with HS256 the verifying secret also signs, so they do not get it.
            values["jwt_dev_secret"] = self.jwt_secret
        directory = secrets_dir_of(self.state_dir) / service.name
        for name, value in values.items():
            write_private(directory / name, value)
        directory.chmod(0o700)
        return directory

    def tls_dir(self, name: str) -> Path:
        """The TLS directory of process `name` (its LIKENESS_TLS_DIR), beside its secrets."""
        return secrets_dir_of(self.state_dir) / name / "tls"

    def _write_tls(self, service: ServiceProcess) -> Path:
        """The process's certificate of its identity (its process name) from this stack's CA; workers
        have no gRPC hop and get none."""
        return self.pki.issue(service.identity).write(self.tls_dir(service.name))

    # ------------------------------------------------------------------------------------------ use

    @property
    def gateway_urls(self) -> list[str]:
        """Every gateway replica's URL (`gateway_url` is the first's)."""
        return [
            f"http://{LOOPBACK}:{service.http_port}"
            for service in self.services.values()
            if service.spec.kind is ServiceKind.HTTP and service.http_port is not None
        ]

    @property
    def gateway_url(self) -> str:
        gateway = self.services.get("gateway")
        if gateway is None or gateway.http_port is None:
            raise StackError("this stack has no gateway (started infra-only or without it)")
        return f"http://{LOOPBACK}:{gateway.http_port}"

    def mint_token(
        self,
        tenant: str = DEV_TENANT,
        scopes: Sequence[str] = ALL_SCOPES,
        subject: str | None = None,
        ttl_seconds: int = 3600,
    ) -> str:
        """A dev JWT the gateway of this stack accepts (default: tenant "dev" with every scope)."""
        return mint_dev_token(self.jwt_secret, tenant, scopes, subject=subject, ttl_seconds=ttl_seconds)

    def dev_env(self) -> dict[str, str]:
        """What dev.env holds: the infra settings, secrets, service addresses, gateway URL, a dev token."""
        env = self.infra.endpoints.as_env()
        env |= {
            "LIKENESS_JWT_DEV_SECRET": self.jwt_secret,
            "LIKENESS_HMAC_SECRET": self.hmac_secret,
            "LIKENESS_DEV_TOKEN": self.mint_token(ttl_seconds=7 * 24 * 3600),
        }
        if self.base_model is not None:
            env["LIKENESS_BASE_MODEL"] = self.base_model
        for service in self.services.values():
            if service.grpc_port is not None:
                env[service.spec.address_env] = service.address
        if "gateway" in self.services:
            env["LIKENESS_GATEWAY_URL"] = self.gateway_url
        return env

    @property
    def tmp_dir(self) -> Path:
        """The services' TMPDIR (private to this stack)."""
        return self.state_dir / "tmp"

    def kill_service(self, name: str) -> None:
        """SIGKILL one service's process group at once (a crash, an OOM kill, a lost node) and reap it;
        `start_service` brings it back on the same ports."""
        process = self.services[name].process
        if process.pid is not None and process.running:
            signal_group(process.pid, signal.SIGKILL)
        process.stop(grace=0)

    def stop_service(self, name: str, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Stop one service (for fault tests); `start_service` brings it back on the same ports."""
        self.services[name].process.stop(grace)

    def start_service(self, name: str, timeout: float | None = None) -> None:
        service = self.services[name]
        service.process.start()
        self._write_records()
        _wait_healthy([service], timeout or StackSettings().stack_timeout)

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The end of a service's or server's log."""
        if name in self.services:
            return self.services[name].process.log_tail(lines)
        return self.infra.processes[name].log_tail(lines)

    # ------------------------------------------------------------------------------------------ stop

    def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Stop the services (gateway first), then the servers if this stack started them. Idempotent."""
        processes = [service.process for service in reversed(self.services.values())]
        _stop_processes(processes, grace)
        shutil.rmtree(secrets_dir_of(self.state_dir), ignore_errors=True)
        if self._owns_infra:
            self.infra.stop(grace)
        if not self._stopped and _recorded_stack_id(self.state_dir) == self.stack_id:
            remove_stack_files(self.state_dir)
        self._stopped = True

    def __enter__(self) -> DevStack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------ records

    def _write_records(self, *, dev_env: bool = False) -> None:
        processes: list[dict[str, Any]] = []
        if self._owns_infra:
            ports = self.infra.main_ports()
            for name, process in self.infra.processes.items():
                if process.pid is not None:
                    probe = {"kind": "infra", "probe": Probe.TCP.value, "probe_port": ports[name]}
                    processes.append(process.record() | probe)
        processes += [
            service.record() for service in self.services.values() if service.process.pid is not None
        ]
        record: dict[str, Any] = {
            "stack_id": self.stack_id,
            "project_dir": str(self.project_dir),
            "state_dir": str(self.state_dir),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "infra_only": self.infra_only,
            "processes": processes,
            "leftover_files": [str(path) for path in self.infra.leftover_files()] if self._owns_infra else [],
            "jwt_dev_secret": self.jwt_secret,
            "env": self.infra.endpoints.as_env(),
        }
        if "gateway" in self.services:
            record["gateway_url"] = self.gateway_url
        write_stack_file(self.state_dir, record)
        if dev_env:
            write_dev_env(self.state_dir, self.dev_env())


# ---------------------------------------------------------------------------------------------- helpers


def _choose_services(names: Sequence[str] | None) -> list[ServiceSpec]:
    if names is None:
        return list(SERVICES)
    unknown = sorted(set(names) - set(SERVICE_NAMES))
    if unknown:
        raise StackError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICE_NAMES)}")
    return [spec for spec in SERVICES if spec.name in names]


def _resolve_base_model(
    explicit: str | Path | None, settings: StackSettings, state_dir: Path, say: Callable[[str], None]
) -> str:
    if explicit is not None:
        return str(explicit)
    if settings.base_model:
        return settings.base_model
    tiny = state_dir / "models" / tiny_model_folder(settings.base_family)
    if not tiny.is_dir():
        say(f"writing the tiny {settings.base_family} base model to {tiny} (once)")
    return str(ensure_tiny_model(state_dir / "models", settings.base_family))


def _recorded_stack_id(state_dir: Path) -> str | None:
    try:
        record = read_stack_file(state_dir)
    except RuntimeError:
        return None
    return None if record is None else str(record.get("stack_id"))


def _alive_records(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        entry for entry in record.get("processes", []) if is_alive(entry["pid"], entry.get("start_ticks"))
    ]


def _refuse_if_running(state_dir: Path) -> None:
    record = read_stack_file(state_dir)
    if record is None:
        return
    alive = _alive_records(record)
    if alive:
        names = ", ".join(entry["name"] for entry in alive)
        raise StackError(
            f"a dev stack is already running in {state_dir} ({names}); run `likeness dev down` first"
        )
    remove_stack_files(state_dir)  # left over from a stack that died without `dev down`


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int
    alive: bool
    problem: str | None
    log: str

    @property
    def healthy(self) -> bool:
        return self.alive and self.problem is None


def stack_status(project_dir: Path) -> tuple[dict[str, Any], list[ProcessStatus]] | None:
    """The recorded stack of `project_dir` and how each of its processes is doing (None: no stack)."""
    record = read_stack_file(state_dir_of(project_dir))
    if record is None:
        return None
    statuses = []
    for entry in record.get("processes", []):
        alive = is_alive(entry["pid"], entry.get("start_ticks"))
        problem = health.check(Probe(entry["probe"]), int(entry["probe_port"])) if alive else "not running"
        statuses.append(ProcessStatus(entry["name"], entry["pid"], alive, problem, entry.get("log", "")))
    return record, statuses


def stop_recorded_stack(project_dir: Path, grace: float = DEFAULT_GRACE_SECONDS) -> list[str] | None:
    """Stop every process recorded in `project_dir/.likeness/stack.json` (services first, then the servers)
    and remove the stack files. Returns the names of the processes that were still running (None: no stack).
    """
    state_dir = state_dir_of(project_dir)
    record = read_stack_file(state_dir)
    if record is None:
        return None
    entries: list[dict[str, Any]] = list(record.get("processes", []))
    services = [entry for entry in reversed(entries) if entry.get("kind") != "infra"]
    servers = [entry for entry in reversed(entries) if entry.get("kind") == "infra"]
    stopped: list[str] = []
    for group in (services, servers):
        alive = [entry for entry in group if is_alive(entry["pid"], entry.get("start_ticks"))]
        _terminate_many(alive, grace)
        stopped += [entry["name"] for entry in alive]
    for leftover in map(Path, record.get("leftover_files", [])):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    remove_stack_files(state_dir)
    return stopped


def _terminate_many(entries: Sequence[Mapping[str, Any]], grace: float) -> None:
    # Ask all to stop at once so their shutdowns overlap, then wait for (or kill) each.
    for entry in entries:
        signal_group(entry["pid"], signal.SIGTERM)
    for entry in entries:
        terminate_recorded(entry["pid"], entry.get("start_ticks"), grace)


__all__ = [
    "NATS",
    "S3",
    "SERVICES",
    "SERVICE_NAMES",
    "VAULT",
    "DevStack",
    "ProcessStatus",
    "ServiceProcess",
    "StackError",
    "stack_status",
    "stop_recorded_stack",
]
