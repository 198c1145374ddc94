"""The real backing servers on loopback: NATS JetStream, SeaweedFS S3 and OpenBao (the Vault API).

`start_infra(state_dir)` starts all three on free 127.0.0.1 ports with every data dir and log under
`state_dir`, waits until each really works (JetStream on, S3 answering, transit mounted), provisions them
as `likeness bootstrap` does (with the `bootstrap` identity: streams, buckets, consumers, the S3 bucket with
versioning and its policy) and returns an `Infra` whose `endpoints.as_env()` is what tests read.

Credentials are per identity, as in a cluster, made up anew for each `Infra`: nats-server runs with a
config file holding one user per identity (`gateway`, `retention`, ..., `bootstrap`) with the permissions
`likeness.access_policies` derives, and SeaweedFS with one S3 identity each (`-s3.config`). Both also know
an unrestricted `admin`, for tests only: `endpoints` (and so `as_env()`) hold the admin's credentials, the
NATS ones inside `nats_url`. A service gets its own identity's instead (`credentials(identity)`, handed
out by the dev stack); the files survive a restart of a server, so it comes back with the same users.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import httpx
from pydantic import SecretStr

from likeness.access_policies import nats_authorization, seaweedfs_identities
from likeness.config import CommonSettings
from likeness.provisioner import Change, bootstrap
from likeness.provisioning import BOOTSTRAP, IDENTITIES, Bounds
from likeness_dev.ports import LOOPBACK, free_port, wait_until_closed
from likeness_dev.procs import DEFAULT_GRACE_SECONDS, ManagedProcess, find_binary, signal_group
from likeness_dev.vault_seal import INIT_FILE, VaultKeys, config_text, initialise, read_keys, unseal

S3_BUCKET = "likeness-data"
S3_REGION = "us-east-1"
TRANSIT_MOUNT = "transit"
DEFAULT_STARTUP_TIMEOUT = 30.0

# SeaweedFS derives some gRPC ports as HTTP port + 10000 no matter what it is told (the embedded
# maintenance worker dials the admin server that way), so every gRPC port is pinned at that offset.
_WEED_GRPC_OFFSET = 10000
# OpenBao's dev listener also opens a cluster port at API port + 1 (a persistent one is told the same).
_BAO_CLUSTER_OFFSET = 1
# What /v1/sys/health answers a persistent OpenBao's first start, and every start after it, with.
_NOT_INITIALISED = 501
_SEALED = 503
# Unix socket paths must stay below ~108 bytes.
_MAX_SOCKET_PATH = 100

NATS = "nats"
S3 = "s3"
VAULT = "vault"


class InfraStartError(RuntimeError):
    """A server did not come up (the message names it and quotes the end of its log)."""


#: The unrestricted user of the dev servers (tests only; never a service's, never in production).
ADMIN = "admin"
#: `LIKENESS_ENV` of everything that runs against these servers (tests, the dev stack, benchmarks).
DEVELOPMENT: Final = "development"


@dataclass(frozen=True)
class IdentityCredentials:
    """One identity's NATS password and S3 keys on these servers (no S3 keys: no S3 identity)."""

    identity: str
    nats_password: str
    s3_access_key: str = ""
    s3_secret_key: str = ""


@dataclass(frozen=True)
class InfraEndpoints:
    """Where the servers are and how to authenticate to them (as the unrestricted admin)."""

    #: With the admin's credentials in it (`nats://admin:...@127.0.0.1:port`): for tests and tools.
    nats_url: str
    #: The same server without credentials: what services are given, with their own user.
    nats_address: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_bucket: str
    s3_region: str
    vault_addr: str
    vault_token: str
    nats_store_dir: Path
    s3_data_dir: Path

    def as_env(self) -> dict[str, str]:
        """The environment our services read their infrastructure settings from."""
        return {
            "LIKENESS_NATS_URL": self.nats_url,
            "LIKENESS_S3_ENDPOINT": self.s3_endpoint,
            "LIKENESS_S3_ACCESS_KEY": self.s3_access_key,
            "LIKENESS_S3_SECRET_KEY": self.s3_secret_key,
            "LIKENESS_S3_BUCKET": self.s3_bucket,
            "LIKENESS_S3_REGION": self.s3_region,
            "LIKENESS_VAULT_ADDR": self.vault_addr,
            "LIKENESS_VAULT_TOKEN": self.vault_token,
            "LIKENESS_VAULT_AUTH": "token",
            # Said explicitly: the settings' default is production, which refuses everything above.
            "LIKENESS_ENV": DEVELOPMENT,
        }


#: Which of `InfraEndpoints.as_env()` are secrets: a dev stack hands them to services as files.
INFRA_SECRET_VARIABLES = ("LIKENESS_S3_ACCESS_KEY", "LIKENESS_S3_SECRET_KEY", "LIKENESS_VAULT_TOKEN")


@dataclass(frozen=True)
class _NatsPorts:
    client: int
    monitor: int
    #: The route port of a clustered node (0: a single server, no cluster).
    cluster: int = 0


#: The JetStream cluster's name when `Infra(nats_cluster_size=3)` runs one.
NATS_CLUSTER_NAME = "likeness"


def nats_node_name(number: int) -> str:
    """A clustered node's process and server name (`nats-1`, ...); its stream leadership names it so."""
    return f"{NATS}-{number}"


@dataclass(frozen=True)
class _WeedPorts:
    master: int
    volume: int
    filer: int
    s3: int
    admin: int

    def all(self) -> list[int]:
        http = [self.master, self.volume, self.filer, self.s3, self.admin]
        return http + [port + _WEED_GRPC_OFFSET for port in http]


def _private_file(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds a secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)


def _env_without(*prefixes: str) -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}


class Infra:
    """NATS, SeaweedFS and OpenBao processes with fixed ports, state and logs under one directory.

    Ports are chosen once, so a server stopped with `stop_<name>()` comes back on the same address
    with `start_<name>()` (for fault tests); NATS and SeaweedFS keep their data dirs, so they come back
    with everything they stored. OpenBao runs in dev mode and keeps everything in memory: after
    `start_vault()` transit is mounted again but all earlier keys are gone; `pause_server(VAULT)` and
    `resume_server(VAULT)` stage an outage that keeps them.

    The bigger stack of the fault suite (opt-in; the dev stack and `make demo` keep the defaults):
    `nats_cluster_size=3` runs NATS as a JetStream cluster of three processes (`nats-1`..`nats-3`, routes on
    loopback, a store dir each under `nats/`) whose streams and buckets bootstrap makes with 3 replicas, and
    clients get all three URLs; `persistent_vault=True` runs OpenBao on raft storage under `vault/`,
    initialised once and unsealed by every `start_vault()` (`vault_seal`), so a real restart keeps every key.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        die_with_parent: bool = True,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        nats_cluster_size: int = 1,
        persistent_vault: bool = False,
    ) -> None:
        if nats_cluster_size not in (1, 3, 5):
            raise ValueError("a JetStream cluster has 1 (no cluster), 3 or 5 servers")
        self.state_dir = state_dir.resolve()
        self.log_dir = self.state_dir / "logs"
        self.startup_timeout = startup_timeout
        self._die_with_parent = die_with_parent

        self.nats_store_dir = self.state_dir / "nats"
        self.s3_data_dir = self.state_dir / "s3"
        self._s3_identities = self.state_dir / "s3-identities.json"
        self._weed_config_dir = self.state_dir / "s3-config"
        self._socket_dir = self._choose_socket_dir()

        self.nats_cluster_size = nats_cluster_size
        self.persistent_vault = persistent_vault
        clustered = nats_cluster_size > 1
        self._nats_nodes = {
            (nats_node_name(number) if clustered else NATS): _NatsPorts(
                client=free_port(), monitor=free_port(), cluster=free_port() if clustered else 0
            )
            for number in range(1, nats_cluster_size + 1)
        }
        self._weed_ports = _WeedPorts(
            master=free_port(also_free=[_WEED_GRPC_OFFSET]),
            volume=free_port(also_free=[_WEED_GRPC_OFFSET]),
            filer=free_port(also_free=[_WEED_GRPC_OFFSET]),
            s3=free_port(also_free=[_WEED_GRPC_OFFSET]),
            admin=free_port(also_free=[_WEED_GRPC_OFFSET]),
        )
        self._vault_port = free_port(also_free=[_BAO_CLUSTER_OFFSET])

        self._s3_access_key = "likeness-" + secrets.token_hex(6)
        self._s3_secret_key = secrets.token_urlsafe(30)
        self._vault_token = "dev-" + secrets.token_urlsafe(24)
        self._vault_dir = self.state_dir / "vault"
        self._vault_init_file = self.state_dir / INIT_FILE
        self._nats_admin_password = secrets.token_urlsafe(24)
        self._nats_config = self.state_dir / "nats-users.conf"
        self._credentials = {
            spec.name: IdentityCredentials(
                spec.name,
                nats_password=secrets.token_urlsafe(24),
                s3_access_key=f"likeness-{spec.name}-{secrets.token_hex(4)}" if spec.s3 is not None else "",
                s3_secret_key=secrets.token_urlsafe(30) if spec.s3 is not None else "",
            )
            for spec in IDENTITIES
        }

        self.nats_nodes = {name: self._nats_process(name, ports) for name, ports in self._nats_nodes.items()}
        #: The first NATS server (the only one unless clustered).
        self.nats = next(iter(self.nats_nodes.values()))
        self.s3 = self._weed_process()
        self.vault = self._bao_process()

    # ----------------------------------------------------------------------------------------- public

    @property
    def endpoints(self) -> InfraEndpoints:
        clients = [ports.client for ports in self._nats_nodes.values()]
        admin = f"{ADMIN}:{self._nats_admin_password}@"
        return InfraEndpoints(
            # Every server of a cluster, comma-separated (`likeness.bus.nats_servers`).
            nats_url=",".join(f"nats://{admin}{LOOPBACK}:{port}" for port in clients),
            nats_address=",".join(f"nats://{LOOPBACK}:{port}" for port in clients),
            s3_endpoint=f"http://{LOOPBACK}:{self._weed_ports.s3}",
            s3_access_key=self._s3_access_key,
            s3_secret_key=self._s3_secret_key,
            s3_bucket=S3_BUCKET,
            s3_region=S3_REGION,
            vault_addr=f"http://{LOOPBACK}:{self._vault_port}",
            vault_token=self.vault_token,
            nats_store_dir=self.nats_store_dir,
            s3_data_dir=self.s3_data_dir,
        )

    def credentials(self, identity: str) -> IdentityCredentials:
        """An identity's NATS password and S3 keys on these servers (`likeness.provisioning.IDENTITIES`)."""
        return self._credentials[identity]

    def settings_of(self, identity: str) -> CommonSettings:
        """Settings that connect as `identity` (its NATS user, its S3 keys): what its process would read."""
        credentials = self._credentials[identity]
        endpoints = self.endpoints
        return CommonSettings(
            env=DEVELOPMENT,  # the dev servers' plaintext endpoints (the default, production, refuses them)
            nats_url=endpoints.nats_address,
            nats_user=identity,
            nats_password=SecretStr(credentials.nats_password),
            s3_endpoint=endpoints.s3_endpoint,
            s3_access_key=SecretStr(credentials.s3_access_key),
            s3_secret_key=SecretStr(credentials.s3_secret_key),
            s3_bucket=endpoints.s3_bucket,
            s3_region=endpoints.s3_region,
        )

    def provision(
        self, *, nats_side: bool = True, s3_side: bool = True, audit_max_bytes: int | None = None
    ) -> list[Change]:
        """What `likeness bootstrap` does, with the `bootstrap` identity (idempotent); one side only, or
        another audit bound, for tests that start one server of their own."""
        coroutine = bootstrap(
            self.settings_of(BOOTSTRAP),
            nats_side=nats_side,
            s3_side=s3_side,
            audit_max_bytes=audit_max_bytes,
            bounds=Bounds(replicas=self.nats_cluster_size),
        )
        # In a thread of its own: callers may be inside an event loop (async fixtures) or not.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, coroutine).result()

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        """Every server process by name: `nats` (or `nats-1`.. in a cluster), `s3`, `vault`."""
        return {**self.nats_nodes, S3: self.s3, VAULT: self.vault}

    @property
    def vault_token(self) -> str:
        """The root token: made up for the dev server, handed out by initialisation for a persistent one."""
        keys = read_keys(self._vault_init_file) if self.persistent_vault else None
        return keys.root_token if keys is not None else self._vault_token

    @property
    def vault_unseal_key(self) -> str:
        """A persistent OpenBao's unseal key, once initialised ("" for the dev server: it has none)."""
        keys = read_keys(self._vault_init_file) if self.persistent_vault else None
        return keys.unseal_key if keys is not None else ""

    @property
    def nats_monitor_url(self) -> str:
        return self.nats_monitor_url_of(next(iter(self._nats_nodes)))

    def nats_monitor_url_of(self, node: str) -> str:
        return f"http://{LOOPBACK}:{self._nats_nodes[node].monitor}"

    def ports(self) -> dict[str, list[int]]:
        """Every port each server listens on (for checks that they are released after a stop)."""
        return {
            **{
                name: [port for port in (ports.client, ports.monitor, ports.cluster) if port]
                for name, ports in self._nats_nodes.items()
            },
            S3: self._weed_ports.all(),
            VAULT: [self._vault_port, self._vault_port + _BAO_CLUSTER_OFFSET],
        }

    def main_ports(self) -> dict[str, int]:
        """The port clients use, per server."""
        nats = {name: ports.client for name, ports in self._nats_nodes.items()}
        return {**nats, S3: self._weed_ports.s3, VAULT: self._vault_port}

    def leftover_files(self) -> list[Path]:
        """Files and folders outside `state_dir` the servers may leave behind (delete after stopping)."""
        outside = [] if self._socket_dir.parent == self.state_dir else [self._socket_dir]
        return self._weed_grpc_sockets() + outside

    def start(self) -> None:
        """Start all servers (in parallel) and wait until each works; on failure stop them all."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._spawn_nats()
            self._spawn_s3()
            self._spawn_vault()
            self._wait_nats()
            self._wait_s3()
            self._wait_vault()
            self.provision()
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Stop every server (SIGTERM, SIGKILL after `grace`). Idempotent."""
        for process in (self.vault, self.s3, *self.nats_nodes.values()):
            process.stop(grace)
        self._remove_weed_grpc_sockets()
        if self._socket_dir.parent != self.state_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def stop_nats(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Stop every NATS server (all nodes of a cluster)."""
        for process in self.nats_nodes.values():
            process.terminate()
        for process in self.nats_nodes.values():
            process.stop(grace)

    def start_nats(self) -> None:
        """Start every NATS server that is not running and wait until all work."""
        stopped = [name for name, process in self.nats_nodes.items() if not process.running]
        self._spawn_nats(stopped)
        self._wait_nats(stopped)

    def stop_s3(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        self.s3.stop(grace)
        self._remove_weed_grpc_sockets()

    def start_s3(self) -> None:
        self._spawn_s3()
        self._wait_s3()

    def stop_vault(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        self.vault.stop(grace)

    def start_vault(self) -> None:
        """Bring OpenBao back on the same address with the same root token: a dev server without its old
        keys; a persistent one with all of them, once unsealed (which this does)."""
        self._spawn_vault()
        self._wait_vault()

    def stop_server(self, name: str, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Stop one server by name ("nats", "s3" or "vault"; "nats" stops every node of a cluster, a node's
        own name, e.g. "nats-2", that node alone)."""
        if name in self.nats_nodes and name != NATS:
            self.nats_nodes[name].stop(grace)
            return
        {NATS: self.stop_nats, S3: self.stop_s3, VAULT: self.stop_vault}[name](grace)

    def start_server(self, name: str) -> None:
        """Start one stopped server again by name (as `stop_server` takes them) and wait until it works."""
        if name in self.nats_nodes and name != NATS:
            self._spawn_nats([name])
            self._wait_nats([name])
            return
        {NATS: self.start_nats, S3: self.start_s3, VAULT: self.start_vault}[name]()

    def kill_server(self, name: str) -> None:
        """SIGKILL one server process at once (a lost node: no shutdown, nothing flushed) and reap it;
        `start_server(name)` brings it back on the same ports with whatever its data dir kept."""
        process = self.processes[name]
        if process.pid is not None and process.running:
            signal_group(process.pid, signal.SIGKILL)
        process.stop(grace=0)

    def pause_server(self, name: str) -> None:
        """Freeze one server (SIGSTOP): its ports stay open, connections are accepted by the kernel, but
        nothing answers, as with a hung or partitioned server. This is how a Vault outage is staged: a
        dev-mode OpenBao keeps its keys in memory only, so stopping it would lose every subject's key."""
        process = self.processes[name]
        if process.pid is None or not process.running:
            raise RuntimeError(f"{name} is not running")
        signal_group(process.pid, signal.SIGSTOP)

    def resume_server(self, name: str) -> None:
        """Let a paused server go on (SIGCONT), with everything it held."""
        process = self.processes[name]
        if process.pid is not None and process.running:
            signal_group(process.pid, signal.SIGCONT)

    def wait_released(self, timeout: float = 10.0) -> list[int]:
        """After stop(): wait until no port of ours accepts connections; returns any still open."""
        return wait_until_closed([port for ports in self.ports().values() for port in ports], timeout)

    def s3_client(
        self, secret_key: str | None = None, *, access_key: str | None = None, retries: int = 2
    ) -> Any:
        """A `minio.Minio` client for our S3, as the admin (optionally with other keys: an identity's, or a
        wrong secret, to test refusals)."""
        import urllib3
        from minio import Minio

        # Few, quick retries: the default client retries a refused connection for seconds.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=2.0, read=10.0),
            retries=urllib3.Retry(total=retries, backoff_factor=0.1, status_forcelist=[500, 502, 503, 504]),
        )
        return Minio(
            f"{LOOPBACK}:{self._weed_ports.s3}",
            access_key=self._s3_access_key if access_key is None else access_key,
            secret_key=self._s3_secret_key if secret_key is None else secret_key,
            secure=False,
            region=S3_REGION,
            http_client=http,
        )

    def vault_client(self) -> Any:
        """An authenticated `hvac.Client` for our OpenBao."""
        import hvac

        return hvac.Client(url=self.endpoints.vault_addr, token=self.vault_token, timeout=5)

    def __enter__(self) -> Infra:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------------- processes

    def _choose_socket_dir(self) -> Path:
        preferred = self.state_dir / "run"
        if len(str(preferred / "filer.sock")) <= _MAX_SOCKET_PATH:
            return preferred
        return Path(tempfile.mkdtemp(prefix="likeness-"))

    def _nats_store_dir_of(self, name: str) -> Path:
        # A cluster's nodes each keep their own store, all under `nats_store_dir` (which the leak scans read).
        return self.nats_store_dir if name == NATS else self.nats_store_dir / name

    def _nats_process(self, name: str, ports: _NatsPorts) -> ManagedProcess:
        argv = [
            find_binary("nats-server"),
            # The users and their permissions (written before each start; flags below win for the rest).
            "-c", str(self._nats_config),
            "-js",
            "-a", LOOPBACK,
            "-p", str(ports.client),
            "-m", str(ports.monitor),
            "-sd", str(self._nats_store_dir_of(name)),
        ]  # fmt: skip
        if ports.cluster:
            # Routes to every other node on loopback (plaintext, as the dev servers' client ports are);
            # the server name is what stream info reports as a stream's leader.
            routes = [
                f"nats://{LOOPBACK}:{other.cluster}" for other in self._nats_nodes.values() if other != ports
            ]
            argv += [
                "-n", name,
                "--cluster_name", NATS_CLUSTER_NAME,
                "--cluster", f"nats://{LOOPBACK}:{ports.cluster}",
                "--routes", ",".join(routes),
            ]  # fmt: skip
        return ManagedProcess(
            name,
            argv,
            self.log_dir / f"{name}.log",
            cwd=self.state_dir,
            die_with_parent=self._die_with_parent,
        )

    def _weed_process(self) -> ManagedProcess:
        ports = self._weed_ports
        options = {
            "dir": self.s3_data_dir,
            "ip": LOOPBACK,
            "ip.bind": LOOPBACK,
            "master.port": ports.master,
            "master.port.grpc": ports.master + _WEED_GRPC_OFFSET,
            "master.telemetry": "false",
            "volume.port": ports.volume,
            "volume.port.grpc": ports.volume + _WEED_GRPC_OFFSET,
            "filer.port": ports.filer,
            "filer.port.grpc": ports.filer + _WEED_GRPC_OFFSET,
            "filer.localSocket": self._socket_dir / "filer.sock",
            "s3.port": ports.s3,
            "s3.port.grpc": ports.s3 + _WEED_GRPC_OFFSET,
            "s3.port.iceberg": 0,
            "s3.port.lance": 0,
            "s3.config": self._s3_identities,
            "s3.localSocket": self._socket_dir / "s3.sock",
            "webdav": "false",
            "admin.ui": "false",
            # Nothing to drain in dev: stop at once instead of waiting out the pre-stop delay.
            "volume.preStopSeconds": 0,
            "admin.port": ports.admin,
            "admin.port.grpc": ports.admin + _WEED_GRPC_OFFSET,
        }
        argv = [
            find_binary("weed"),
            # glog writes files to /tmp unless told to log to stderr only (which goes to our log file).
            "-logtostderr",
            f"-config_dir={self._weed_config_dir}",
            "mini",
            *(f"-{key}={value}" for key, value in options.items()),
        ]
        # AWS_* in our environment would be taken as fallback admin credentials: never inherit them.
        return ManagedProcess(
            S3,
            argv,
            self.log_dir / "s3.log",
            env=_env_without("AWS_"),
            cwd=self.state_dir,
            die_with_parent=self._die_with_parent,
        )

    def _bao_process(self) -> ManagedProcess:
        if self.persistent_vault:
            argv = [find_binary("bao"), "server", f"-config={self._vault_dir / 'config.hcl'}"]
            return ManagedProcess(
                VAULT,
                argv,
                self.log_dir / "vault.log",
                env=_env_without("BAO_", "VAULT_"),
                cwd=self.state_dir,
                die_with_parent=self._die_with_parent,
            )
        argv = [
            find_binary("bao"),
            "server",
            "-dev",
            "-dev-no-store-token",
            f"-dev-listen-address={LOOPBACK}:{self._vault_port}",
        ]
        # The root token goes in through the environment so it does not show up in `ps`.
        env = _env_without("BAO_", "VAULT_") | {"BAO_DEV_ROOT_TOKEN_ID": self._vault_token}
        return ManagedProcess(
            VAULT,
            argv,
            self.log_dir / "vault.log",
            env=env,
            cwd=self.state_dir,
            die_with_parent=self._die_with_parent,
        )

    def _spawn_nats(self, names: list[str] | None = None) -> None:
        passwords = {name: found.nats_password for name, found in self._credentials.items()}
        admin = {"user": ADMIN, "password": self._nats_admin_password}
        _private_file(self._nats_config, nats_authorization(passwords, extra_users=[admin]))
        for name in self.nats_nodes if names is None else names:
            self._nats_store_dir_of(name).mkdir(parents=True, exist_ok=True)
            self.nats_nodes[name].start()

    def _spawn_s3(self) -> None:
        for path in (self.s3_data_dir, self._weed_config_dir, self._socket_dir):
            path.mkdir(parents=True, exist_ok=True)
        for stale_socket in ("filer.sock", "s3.sock"):
            (self._socket_dir / stale_socket).unlink(missing_ok=True)
        self._remove_weed_grpc_sockets()
        keys = {
            name: (found.s3_access_key, found.s3_secret_key)
            for name, found in self._credentials.items()
            if found.s3_access_key
        }
        admin = {
            "name": ADMIN,
            "credentials": [{"accessKey": self._s3_access_key, "secretKey": self._s3_secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        identities = seaweedfs_identities(keys, S3_BUCKET, extra=[admin])
        _private_file(self._s3_identities, json.dumps(identities, indent=2))
        self.s3.start()

    def _weed_grpc_sockets(self) -> list[Path]:
        # SeaweedFS also serves each gRPC port on a Unix socket at a fixed /tmp path named after the
        # port (not configurable in this version) and leaves some behind; ours are known by port.
        ports = self._weed_ports
        components = {"master": ports.master, "volume": ports.volume, "filer": ports.filer}
        components |= {"s3": ports.s3, "admin": ports.admin}
        tmp = Path("/tmp")  # noqa: S108 - hardcoded in SeaweedFS, not $TMPDIR
        return [
            tmp / f"seaweedfs-{name}-grpc-{port + _WEED_GRPC_OFFSET}.sock"
            for name, port in components.items()
        ]

    def _remove_weed_grpc_sockets(self) -> None:
        if self.s3.running:
            return
        for path in self._weed_grpc_sockets():
            path.unlink(missing_ok=True)

    def _spawn_vault(self) -> None:
        if self.persistent_vault:
            (self._vault_dir / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
            config = config_text(
                self._vault_port, self._vault_port + _BAO_CLUSTER_OFFSET, self._vault_dir / "data"
            )
            (self._vault_dir / "config.hcl").write_text(config)
        self.vault.start()

    # ----------------------------------------------------------------------------------------- readiness

    def _unseal_vault(self, health: int) -> str:
        """Initialise a persistent OpenBao once, unseal it after every start; says what it did (the probe
        then checks again)."""
        addr = self.endpoints.vault_addr
        keys: VaultKeys | None = read_keys(self._vault_init_file)
        if health == _NOT_INITIALISED:
            if keys is not None:
                raise InfraStartError(f"OpenBao at {addr} lost its storage: {self._vault_init_file} is stale")
            keys = initialise(addr, self._vault_init_file)
        if keys is None:
            raise InfraStartError(f"OpenBao at {addr} is sealed and {self._vault_init_file} is missing")
        return "unsealed, checking again" if unseal(addr, keys) else "unseal key given, still sealed"

    def _wait(self, process: ManagedProcess, what: str, probe: Callable[[], str | None]) -> None:
        """Call `probe` until it returns None (ready) or the timeout passes; it returns why not yet."""
        deadline = time.monotonic() + self.startup_timeout
        reason = "not started"
        while True:
            if not process.running:
                raise InfraStartError(
                    f"{process.name} ({what}) exited with code {process.returncode} before it was ready\n"
                    f"--- last lines of {process.log_path} ---\n{process.log_tail()}"
                )
            try:
                outcome = probe()
            except Exception as error:  # keep polling: a server coming up refuses in many ways
                outcome = f"{type(error).__name__}: {error}"
            if outcome is None:
                return
            reason = outcome
            if time.monotonic() > deadline:
                raise InfraStartError(
                    f"{process.name} ({what}) was not ready within {self.startup_timeout:.0f}s: {reason}\n"
                    f"--- last lines of {process.log_path} ---\n{process.log_tail()}"
                )
            time.sleep(0.1)

    def _wait_nats(self, names: list[str] | None = None) -> None:
        for name in self.nats_nodes if names is None else names:
            self._wait_nats_node(name)

    def _wait_nats_node(self, name: str) -> None:
        ports = self._nats_nodes[name]

        def probe() -> str | None:
            # In a cluster /healthz answers 200 only once the node has caught up with the meta leader.
            health = httpx.get(f"{self.nats_monitor_url_of(name)}/healthz", timeout=2.0)
            if health.status_code != 200:
                return f"/healthz answered {health.status_code}: {health.text.strip()}"
            # The INFO line every client gets first tells whether JetStream is on for clients.
            with socket.create_connection((LOOPBACK, ports.client), timeout=2.0) as conn:
                first_line = conn.makefile("rb").readline().decode()
            if not first_line.startswith("INFO "):
                return f"unexpected greeting {first_line[:80]!r}"
            if not json.loads(first_line[5:]).get("jetstream"):
                return "JetStream is not enabled"
            return None

        self._wait(self.nats_nodes[name], f"nats://{LOOPBACK}:{ports.client}", probe)

    def _wait_s3(self) -> None:
        def probe() -> str | None:
            # Answering an authenticated request is ready; the bucket is bootstrap's (`provision`).
            self.s3_client().list_buckets()
            return None

        self._wait(self.s3, self.endpoints.s3_endpoint, probe)

    def _wait_vault(self) -> None:
        def probe() -> str | None:
            health = httpx.get(f"{self.endpoints.vault_addr}/v1/sys/health", timeout=2.0)
            if self.persistent_vault and health.status_code in (_NOT_INITIALISED, _SEALED):
                return self._unseal_vault(health.status_code)
            if health.status_code != 200:
                return f"/v1/sys/health answered {health.status_code}"
            client = self.vault_client()
            mounts = client.sys.list_mounted_secrets_engines()["data"]
            if f"{TRANSIT_MOUNT}/" not in mounts:
                client.sys.enable_secrets_engine("transit", path=TRANSIT_MOUNT)
                return "transit was just mounted, checking again"
            return None

        self._wait(self.vault, self.endpoints.vault_addr, probe)


def start_infra(
    state_dir: Path,
    *,
    die_with_parent: bool = True,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    nats_cluster_size: int = 1,
    persistent_vault: bool = False,
) -> Infra:
    """Start NATS JetStream, SeaweedFS S3 and OpenBao under `state_dir` and wait until all work.

    With `die_with_parent` (the default, for tests) the servers are killed by the kernel if this
    process dies without stopping them; `likeness dev up` turns it off so the servers outlive it.
    """
    infra = Infra(
        state_dir,
        die_with_parent=die_with_parent,
        startup_timeout=startup_timeout,
        nats_cluster_size=nats_cluster_size,
        persistent_vault=persistent_vault,
    )
    infra.start()
    return infra
