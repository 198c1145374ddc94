"""Vault's Kubernetes login, proven against a real API server: each service account's audience-bound
token, issued through the TokenRequest API as the kubelet projects it into a pod, logs into OpenBao with
that identity's role from deploy/vault and gets exactly that identity's policy; every other account, a
token for another audience, an account of the same name in another namespace and a forged token are
refused.

The servers are real: etcd and kube-apiserver 1.20.2 (`make kube-apiserver` builds it once, outside the
repository; `likeness_dev.kube`), and the session's OpenBao, configured by the real deploy/vault/bootstrap.sh
with the API server's address, CA and a reviewer account bound to `system:auth-delegator`. OpenBao checks
every login with a TokenReview sent to the API server. The logins go through the services' own code
(`likeness.vault_transit.kubernetes_login`, `SubjectKeys`). Run alone: `make test-vault-k8s`.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import hvac
import hvac.exceptions
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from likeness.vault_transit import KeyAccessDenied, KeyError_, SubjectKeys, key_name, kubernetes_login
from likeness_dev.infra import Infra
from likeness_dev.kube import KubeApiError, KubeApiServer
from likeness_dev.procs import find_binary

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "deploy" / "vault" / "bootstrap.sh"
#: The Vault identities of deploy/vault (one role and one policy each); the gateway has none.
IDENTITIES = ("retention", "ingest", "trainer", "trainer-worker", "renderer", "renderer-worker")
GATEWAY = "gateway"
ACCOUNTS = (*IDENTITIES, GATEWAY)
#: What the chart deploys by default (release "likeness"): namespace and service-account prefix.
NAMESPACE = "likeness"
SA_PREFIX = "likeness"
AUDIENCE = "vault"
#: The mount the services log in at (`kubernetes_login` uses hvac's default, as production does).
AUTH_MOUNT = "kubernetes"
REVIEWER_NAMESPACE = "vault"
REVIEWER = "vault-token-reviewer"


def account(identity: str) -> str:
    return f"{SA_PREFIX}-{identity}"


def role(identity: str) -> str:
    return f"likeness-{identity}"


@pytest.fixture(scope="module")
def kube(server_process: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    with KubeApiServer(tmp_path_factory.mktemp("kube")) as server:
        api = server.api
        api.create_namespace(NAMESPACE)
        for name in ACCOUNTS:
            api.create_service_account(NAMESPACE, account(name))
        # Vault's reviewer: an account allowed to create TokenReviews, and nothing else.
        api.create_namespace(REVIEWER_NAMESPACE)
        api.create_service_account(REVIEWER_NAMESPACE, REVIEWER)
        api.bind_cluster_role("vault-token-reviewer", "system:auth-delegator", REVIEWER_NAMESPACE, REVIEWER)
        yield server


@pytest.fixture(scope="module")
def root(
    infra: Infra, kube: KubeApiServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[hvac.Client]:
    """The session's OpenBao, prepared by deploy/vault/bootstrap.sh for this API server (run twice: the
    script is idempotent); its Kubernetes auth mount is removed again afterwards."""
    files = tmp_path_factory.mktemp("vault-k8s")
    reviewer_jwt = files / "reviewer.jwt"
    reviewer_jwt.write_text(kube.api.request_token(REVIEWER_NAMESPACE, REVIEWER, expiration_seconds=3600))
    endpoints = infra.endpoints
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VAULT_", "BAO_"))} | {
        "VAULT_CLI": find_binary("bao"),
        "VAULT_ADDR": endpoints.vault_addr,
        "VAULT_TOKEN": endpoints.vault_token,
        "LIKENESS_NAMESPACE": NAMESPACE,
        "LIKENESS_SERVICE_ACCOUNT_PREFIX": SA_PREFIX,
        "LIKENESS_TOKEN_AUDIENCE": AUDIENCE,
        "LIKENESS_KUBERNETES_AUTH_MOUNT": AUTH_MOUNT,
        "KUBERNETES_HOST": kube.url,
        "KUBERNETES_CA_CERT": str(kube.pki.ca_cert),
        "TOKEN_REVIEWER_JWT": str(reviewer_jwt),
        "VAULT_OUTSIDE_CLUSTER": "1",
    }
    client = hvac.Client(url=endpoints.vault_addr, token=endpoints.vault_token)
    try:
        for attempt in (1, 2):
            done = subprocess.run(
                ["bash", str(BOOTSTRAP)], env=env, capture_output=True, text=True, timeout=60, check=False
            )
            assert done.returncode == 0, f"bootstrap run {attempt} failed:\n{done.stdout}\n{done.stderr}"
        yield client
    finally:
        if f"{AUTH_MOUNT}/" in client.sys.list_auth_methods()["data"]:
            client.sys.disable_auth_method(AUTH_MOUNT)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """Where a pod's projected token lies; the test writes the token it wants to present."""
    return tmp_path / "token"


def login_as(infra: Infra, identity_role: str, token: str, token_path: Path) -> SubjectKeys:
    """A service's SubjectKeys, logging in as production does (the token read from a file at each login)."""
    token_path.write_text(token)
    client = hvac.Client(url=infra.endpoints.vault_addr, timeout=10)
    return SubjectKeys(client, login=kubernetes_login(identity_role, str(token_path)))


def raw_login(infra: Infra, identity_role: str, token: str) -> dict[str, object]:
    client = hvac.Client(url=infra.endpoints.vault_addr, timeout=10)
    answer: dict[str, object] = client.auth.kubernetes.login(
        role=identity_role, jwt=token, mount_point=AUTH_MOUNT
    )
    return answer


def assert_refused(infra: Infra, identity_role: str, token: str) -> None:
    """Vault issues no token: the login answers 403 (permission denied) or 400 (a claim it rejects)."""
    with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest)):
        raw_login(infra, identity_role, token)


def _subject() -> str:
    return f"sub_k8s{uuid.uuid4().hex[:16]}"


@pytest.mark.parametrize("identity", IDENTITIES)
def test_each_account_gets_exactly_its_policy(
    identity: str, infra: Infra, kube: KubeApiServer, root: hvac.Client, token_file: Path
) -> None:
    token = kube.api.request_token(NAMESPACE, account(identity), audiences=[AUDIENCE])
    keys = login_as(infra, role(identity), token, token_file)
    admin = SubjectKeys(root)
    subject = _subject()
    admin.create(subject)
    wrapped = admin.data_key(subject).wrapped

    # One Transit call its code makes succeeds, and one it never makes is refused.
    if identity == "retention":
        assert keys.exists(subject) is True
        with pytest.raises(KeyAccessDenied):
            keys.unwrap(subject, [wrapped])
    elif identity == "renderer":  # FetchImage opens images; the serve role seals nothing
        assert len(keys.unwrap(subject, [wrapped])[0]) == 32
        with pytest.raises(KeyAccessDenied):
            keys.data_key(subject)
    elif identity == "trainer":  # the serve role opens models for the data export (ExportModels) only
        assert len(keys.unwrap(subject, [wrapped])[0]) == 32
        with pytest.raises(KeyAccessDenied):
            keys.data_key(subject)
        with pytest.raises(KeyAccessDenied):
            keys.exists(subject)
    else:  # ingest and the workers seal and open
        assert keys.data_key(subject).key_name == key_name(subject)
        assert len(keys.unwrap(subject, [wrapped])[0]) == 32
        with pytest.raises(KeyAccessDenied):
            keys.create(_subject())

    # The token the login issued: this identity's policy and nothing else, short-lived, bound to the account.
    issued = keys._client.token
    assert issued, "the login issued no token"
    looked_up = root.auth.token.lookup(issued)["data"]
    assert looked_up["policies"] == [role(identity)], "exactly its policy, without Vault's default one"
    assert 0 < looked_up["ttl"] <= 15 * 60
    assert looked_up["meta"]["service_account_name"] == account(identity)
    assert looked_up["meta"]["service_account_namespace"] == NAMESPACE
    assert looked_up["meta"]["role"] == role(identity)


@pytest.mark.parametrize("identity", IDENTITIES)
def test_every_other_account_is_refused(
    identity: str, infra: Infra, kube: KubeApiServer, root: hvac.Client
) -> None:
    others = [name for name in ACCOUNTS if name != identity]
    for other in others:
        token = kube.api.request_token(NAMESPACE, account(other), audiences=[AUDIENCE])
        assert_refused(infra, role(identity), token)


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize(
    "audiences", [[], ["not-vault"], ["likeness"]], ids=["api-server", "not-vault", "likeness"]
)
def test_a_token_for_another_audience_is_refused(
    identity: str, audiences: list[str], infra: Infra, kube: KubeApiServer, root: hvac.Client
) -> None:
    token = kube.api.request_token(NAMESPACE, account(identity), audiences=audiences)
    assert_refused(infra, role(identity), token)


def test_the_gateway_has_no_role(
    infra: Infra, kube: KubeApiServer, root: hvac.Client, token_file: Path
) -> None:
    token = kube.api.request_token(NAMESPACE, account(GATEWAY), audiences=[AUDIENCE])
    assert_refused(infra, role(GATEWAY), token)
    keys = login_as(infra, role(GATEWAY), token, token_file)
    with pytest.raises(KeyError_):  # what a gateway configured for Vault would meet at start-up
        keys.data_key(_subject())
    assert sorted(root.list(f"auth/{AUTH_MOUNT}/role")["data"]["keys"]) == sorted(map(role, IDENTITIES))


def test_the_same_account_name_in_another_namespace_is_refused(
    infra: Infra, kube: KubeApiServer, root: hvac.Client
) -> None:
    elsewhere = f"elsewhere-{uuid.uuid4().hex[:6]}"
    kube.api.create_namespace(elsewhere)
    kube.api.create_service_account(elsewhere, account("ingest"))
    token = kube.api.request_token(elsewhere, account("ingest"), audiences=[AUDIENCE])
    assert_refused(infra, role("ingest"), token)


def test_a_forged_token_is_refused(infra: Infra, kube: KubeApiServer, root: hvac.Client) -> None:
    """The real token's claims, signed with another key: only the API server's TokenReview can tell."""
    genuine = kube.api.request_token(NAMESPACE, account("ingest"), audiences=[AUDIENCE])
    assert raw_login(infra, role("ingest"), genuine)["auth"], "the genuine token logs in"
    claims = jwt.decode(genuine, options={"verify_signature": False})
    header = jwt.get_unverified_header(genuine)
    forged = jwt.encode(
        claims, rsa.generate_private_key(65537, 2048), algorithm="RS256", headers={"kid": header.get("kid")}
    )
    assert_refused(infra, role("ingest"), forged)


def test_the_reviewer_may_only_review(kube: KubeApiServer) -> None:
    """OpenBao's reviewer account can create TokenReviews (system:auth-delegator) and nothing else here:
    it cannot mint tokens for the services' accounts."""
    reviewer = kube.api_as(kube.api.request_token(REVIEWER_NAMESPACE, REVIEWER))
    try:
        service_token = kube.api.request_token(NAMESPACE, account("ingest"), audiences=[AUDIENCE])
        review = reviewer.review_token(service_token, audiences=[AUDIENCE])
        assert review["authenticated"] is True
        assert review["user"]["username"] == f"system:serviceaccount:{NAMESPACE}:{account('ingest')}"
        with pytest.raises(KubeApiError) as refused:
            reviewer.request_token(NAMESPACE, account("ingest"), audiences=[AUDIENCE])
        assert refused.value.status == 403
    finally:
        reviewer.close()
