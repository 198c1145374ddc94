"""A throwaway Kubernetes API server on loopback, for tests of what a cluster issues: etcd plus a real
kube-apiserver 1.20.2 (built once by scripts/build-kube-apiserver.sh into a cache outside the repository).

It does what Vault's Kubernetes auth needs of a cluster and nothing more: ServiceAccounts, audience-bound
tokens through the TokenRequest API, TokenReviews, and RBAC (the reviewer's `system:auth-delegator`
binding). No controller manager, scheduler or kubelet: nothing runs pods.

    with KubeApiServer(work_dir) as kube:
        kube.api.create_service_account("likeness", "likeness-ingest")
        token = kube.api.request_token("likeness", "likeness-ingest", audiences=["vault"])

Everything (certificates, the service-account signing key, the static admin token, etcd's data, logs) lives
under `work_dir`; the servers listen on free 127.0.0.1 ports and stop with `stop()`.
"""

from __future__ import annotations

import datetime
import os
import secrets
import shutil
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from likeness_dev.dev_pki import DevCertificateAuthority
from likeness_dev.ports import LOOPBACK, free_port
from likeness_dev.procs import ManagedProcess

KUBE_VERSION = "1.20.2"
#: The issuer of the service-account tokens (any URL will do: only this API server validates them).
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
#: The API server's own audience: a token requested without audiences carries this one.
API_AUDIENCE = SERVICE_ACCOUNT_ISSUER
STARTUP_TIMEOUT = 90.0
BUILD_SCRIPT = "scripts/build-kube-apiserver.sh"


class KubeUnavailable(FileNotFoundError):
    """The kube-apiserver binary or etcd is missing here (the message says how to get them)."""


class KubeStartError(RuntimeError):
    """etcd or kube-apiserver did not come up (the message quotes the end of its log)."""


class KubeApiError(RuntimeError):
    """The API server answered a request with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def kube_bin_dir() -> Path:
    """Where scripts/build-kube-apiserver.sh caches the binaries (its LIKENESS_KUBE_DIR rule)."""
    configured = os.environ.get("LIKENESS_KUBE_DIR")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "likeness" / "kube" / KUBE_VERSION


def find_kube_apiserver() -> Path:
    binary = kube_bin_dir() / "kube-apiserver"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise KubeUnavailable(
            f"kube-apiserver {KUBE_VERSION} is not built in {binary.parent}: run `make kube-apiserver` "
            f"({BUILD_SCRIPT}, about 10 minutes once; Debian's kubernetes source package)"
        )
    return binary


def find_etcd() -> Path:
    found = shutil.which("etcd")
    if found is None:
        raise KubeUnavailable(
            "etcd is not on PATH: run `make kube-apiserver`, which installs Debian's etcd-server "
            "(scripts/install-system-packages.sh etcd)"
        )
    return Path(found)


# ------------------------------------------------------------------------------------------ certificates


@dataclass(frozen=True)
class KubePki:
    """The files the API server is started with, and what a client needs to trust it."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    service_account_key: Path
    token_file: Path
    admin_token: str


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def make_pki(directory: Path) -> KubePki:
    """A CA, a serving certificate for 127.0.0.1 signed by it, the service-account signing key and a
    static admin token (the test's own credential: `system:masters`)."""
    directory.mkdir(parents=True, exist_ok=True)
    validity = datetime.timedelta(days=1)
    ca = DevCertificateAuthority.create("likeness-test-kubernetes-ca", validity=validity)
    serving = ca.issue("kube-apiserver", dns_names=["localhost"], ip_addresses=[LOOPBACK], validity=validity)
    pki = KubePki(
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        service_account_key=directory / "service-account.key",
        token_file=directory / "tokens.csv",
        admin_token=secrets.token_urlsafe(32),
    )
    pki.ca_cert.write_bytes(ca.ca_pem)
    pki.serving_cert.write_bytes(serving.certificate_pem)
    _write_private(pki.serving_key, serving.private_key_pem)
    # RS256: the algorithm every Kubernetes release signs service-account tokens with.
    _write_private(pki.service_account_key, _pem_key(rsa.generate_private_key(65537, 2048)))
    _write_private(
        pki.token_file,
        f'{pki.admin_token},likeness-test-admin,likeness-test-admin,"system:masters"\n'.encode(),
    )
    return pki


# ------------------------------------------------------------------------------------------ API client


class KubeApi:
    """The few Kubernetes API calls the tests make, as the static admin (or any bearer token)."""

    def __init__(self, url: str, ca_cert: Path, token: str) -> None:
        self.url = url
        self._client = httpx.Client(
            base_url=url,
            verify=ssl.create_default_context(cafile=str(ca_cert)),
            headers={"Authorization": f"Bearer {token}"},
            timeout=10.0,
            trust_env=False,  # loopback only: no proxy from the environment
        )

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self._client.request(method, path, json=body)
        if response.status_code >= 400:
            try:
                message = str(response.json().get("message", response.text))
            except ValueError:
                message = response.text
            raise KubeApiError(response.status_code, message)
        result: dict[str, Any] = response.json()
        return result

    def create_namespace(self, name: str) -> None:
        self.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})

    def create_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        return self.request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": name}}
        )

    def delete_service_account(self, namespace: str, name: str) -> None:
        self.request("DELETE", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}")

    def request_token(
        self,
        namespace: str,
        service_account: str,
        audiences: Sequence[str] = (),
        expiration_seconds: int = 600,
    ) -> str:
        """A token for the account through the TokenRequest API, bound to `audiences` (empty: the API
        server's own audience), as the kubelet asks for a pod's projected service-account token."""
        spec: dict[str, Any] = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        answer = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return str(answer["status"]["token"])

    def bind_cluster_role(
        self, binding: str, cluster_role: str, namespace: str, service_account: str
    ) -> None:
        self.request(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            {
                "metadata": {"name": binding},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": cluster_role,
                },
                "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
            },
        )

    def review_token(self, token: str, audiences: Sequence[str] = ()) -> dict[str, Any]:
        """A TokenReview, as Vault sends it (the caller's token must be allowed to create them)."""
        spec: dict[str, Any] = {"token": token}
        if audiences:
            spec["audiences"] = list(audiences)
        answer = self.request(
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec},
        )
        status: dict[str, Any] = answer["status"]
        return status


# ------------------------------------------------------------------------------------------ servers


class KubeApiServer:
    """etcd and kube-apiserver on free loopback ports, with all their state under `work_dir`."""

    def __init__(self, work_dir: Path, *, startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self.work_dir = work_dir
        self.startup_timeout = startup_timeout
        self._apiserver_binary = find_kube_apiserver()
        self._etcd_binary = find_etcd()
        self._etcd_client_port = free_port()
        self._etcd_peer_port = free_port()
        self._port = free_port()
        self.pki = make_pki(work_dir / "pki")
        self.etcd = ManagedProcess(
            "etcd", self._etcd_argv(), work_dir / "logs" / "etcd.log", env=_plain_env()
        )
        self.apiserver = ManagedProcess(
            "kube-apiserver",
            self._apiserver_argv(),
            work_dir / "logs" / "kube-apiserver.log",
            env=_plain_env(),
        )
        self._api: KubeApi | None = None

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self._port}"

    @property
    def api(self) -> KubeApi:
        """A client acting as the test's admin (`system:masters`)."""
        if self._api is None:
            self._api = KubeApi(self.url, self.pki.ca_cert, self.pki.admin_token)
        return self._api

    def api_as(self, token: str) -> KubeApi:
        """A client presenting another token (a service account's): the caller closes it."""
        return KubeApi(self.url, self.pki.ca_cert, token)

    def _etcd_argv(self) -> list[str]:
        client = f"http://{LOOPBACK}:{self._etcd_client_port}"
        peer = f"http://{LOOPBACK}:{self._etcd_peer_port}"
        return [
            str(self._etcd_binary),
            "--name=likeness-test",
            f"--data-dir={self.work_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=likeness-test={peer}",
            "--initial-cluster-state=new",
            # A test's etcd: no fsync per write (its data dies with the test anyway).
            "--unsafe-no-fsync",
        ]

    def _apiserver_argv(self) -> list[str]:
        pki = self.pki
        return [
            str(self._apiserver_binary),
            f"--etcd-servers=http://{LOOPBACK}:{self._etcd_client_port}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={self._port}",
            "--insecure-port=0",  # 1.20 still opens an unauthenticated :8080 unless told not to
            f"--cert-dir={self.work_dir / 'certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--token-auth-file={pki.token_file}",
            "--anonymous-auth=false",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-account-key-file={pki.service_account_key}",
            f"--api-audiences={API_AUDIENCE}",
            "--service-cluster-ip-range=10.96.0.0/24",
            # No controller manager runs: nothing would keep the `kubernetes` Service's endpoints, and
            # loopback is no valid endpoint address anyway.
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--logtostderr=true",
            "--v=1",
        ]

    # -------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        try:
            self.etcd.start()
            self._wait(self.etcd, self._etcd_ready)
            self.apiserver.start()
            self._wait(self.apiserver, self._apiserver_ready)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None
        self.apiserver.stop(grace=10.0)
        self.etcd.stop(grace=5.0)

    def __enter__(self) -> KubeApiServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _etcd_ready(self) -> str | None:
        health = httpx.get(f"http://{LOOPBACK}:{self._etcd_client_port}/health", timeout=2.0, trust_env=False)
        if health.status_code != 200 or '"true"' not in health.text:
            return f"/health answered {health.status_code}: {health.text.strip()[:200]}"
        return None

    def _apiserver_ready(self) -> str | None:
        # /readyz waits for the post-start hooks, the RBAC bootstrap roles among them (system:auth-delegator).
        ready = httpx.get(
            f"{self.url}/readyz",
            verify=ssl.create_default_context(cafile=str(self.pki.ca_cert)),
            headers={"Authorization": f"Bearer {self.pki.admin_token}"},
            timeout=5.0,
            trust_env=False,
        )
        if ready.status_code != 200:
            return f"/readyz answered {ready.status_code}: {ready.text.strip()[-300:]}"
        return None

    def _wait(self, process: ManagedProcess, probe: Callable[[], str | None]) -> None:
        deadline = time.monotonic() + self.startup_timeout
        reason = "not started"
        while True:
            if not process.running:
                raise KubeStartError(
                    f"{process.name} exited with code {process.returncode} before it was ready\n"
                    f"--- last lines of {process.log_path} ---\n{process.log_tail()}"
                )
            try:
                outcome = probe()
            except httpx.HTTPError as error:  # not listening yet, or mid-start
                outcome = f"{type(error).__name__}: {error}"
            if outcome is None:
                return
            reason = outcome
            if time.monotonic() > deadline:
                raise KubeStartError(
                    f"{process.name} was not ready within {self.startup_timeout:.0f}s: {reason}\n"
                    f"--- last lines of {process.log_path} ---\n{process.log_tail()}"
                )
            time.sleep(0.2)


def _plain_env() -> dict[str, str]:
    """The servers' environment: no proxy (everything is loopback) and no etcd or Kubernetes settings
    inherited from the developer's shell."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ETCD_", "KUBE"))
        and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
