"""The Vault policies of deploy/vault, applied by its bootstrap script to a real OpenBao, give each process
identity exactly the Transit operations its code calls, and nothing else.

Identities, not services: a job service's `serve` role (the gRPC API) and its `work` role (the GPU worker)
are two, and the API holds less: the serve roles only the decrypt their exports and downloads need
(trainer: ExportModels; renderer: FetchImage), while their workers seal and open. Each identity gets a
token carrying only its policy (no default policy, as its Kubernetes-auth role issues), and drives the
real `likeness.vault_transit` code paths with it: allowed operations succeed, every other one is refused by
Vault (`KeyAccessDenied`, HTTP 403). tests/k8s proves the roles' logins against a real Kubernetes API server.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import hvac
import hvac.exceptions
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from likeness.vault_transit import KeyAccessDenied, KeyDestroyed, SubjectKeys, key_name
from likeness_dev.infra import Infra
from likeness_dev.procs import find_binary
from retention.vault_keys import RetentionKeys

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = ROOT / "deploy" / "vault" / "bootstrap.sh"
#: Every identity with a Vault role: the services' serve roles and the job services' workers.
IDENTITIES = ("retention", "ingest", "trainer", "trainer-worker", "renderer", "renderer-worker")
#: The gateway has no role and no policy: a token with only Vault's default policy stands for it.
GATEWAY = "gateway"
NAMESPACE = "likeness-test"
SA_PREFIX = "rel-likeness"

#: What each service's code calls in Transit (see the comments in deploy/vault/policies/*.hcl).
OPERATIONS = ("create", "exists", "list", "created_at", "data_key", "unwrap", "destroy")
ALLOWED: dict[str, set[str]] = {
    "retention": {"create", "exists", "list", "created_at", "destroy"},
    "ingest": {"data_key", "unwrap"},  # seals crops and templates, opens templates and exported crops
    "trainer": {"unwrap"},  # serve: ExportModels opens the LoRA for a data export, it seals nothing
    "trainer-worker": {"data_key", "unwrap"},  # opens photos and checkpoints, seals the LoRA
    "renderer": {"unwrap"},  # serve: FetchImage opens an image, it seals nothing
    "renderer-worker": {"data_key", "unwrap"},  # opens the LoRA and templates, seals images
    GATEWAY: set(),
}


def _ca_certificate(path: Path) -> Path:
    """A throwaway CA certificate: Kubernetes auth wants one for an API server outside the cluster."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "likeness-test-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def auth_mount(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Runs deploy/vault/bootstrap.sh with the bao CLI against the test OpenBao (its root token)."""
    mount = f"kubernetes-{uuid.uuid4().hex[:8]}"  # private to this module: other tests never see it
    endpoints = infra.endpoints
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VAULT_", "BAO_"))} | {
        "VAULT_CLI": find_binary("bao"),
        "VAULT_ADDR": endpoints.vault_addr,
        "VAULT_TOKEN": endpoints.vault_token,
        "LIKENESS_NAMESPACE": NAMESPACE,
        "LIKENESS_SERVICE_ACCOUNT_PREFIX": SA_PREFIX,
        "LIKENESS_KUBERNETES_AUTH_MOUNT": mount,
        "KUBERNETES_HOST": "https://127.0.0.1:6443",
        "KUBERNETES_CA_CERT": str(_ca_certificate(tmp_path_factory.mktemp("k8s") / "ca.pem")),
        "VAULT_OUTSIDE_CLUSTER": "1",
    }
    for attempt in (1, 2):  # the second run proves the script is idempotent
        done = subprocess.run(
            ["bash", str(BOOTSTRAP)], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"bootstrap run {attempt} failed:\n{done.stdout}\n{done.stderr}"
    return mount


@pytest.fixture(scope="module")
def root(infra: Infra, auth_mount: str) -> hvac.Client:
    return hvac.Client(url=infra.endpoints.vault_addr, token=infra.endpoints.vault_token)


@pytest.fixture(scope="module")
def clients(root: hvac.Client, infra: Infra) -> Iterator[dict[str, hvac.Client]]:
    """A token per identity with only its policy, as its Kubernetes-auth role would issue it."""
    made: dict[str, hvac.Client] = {}
    for identity in (*IDENTITIES, GATEWAY):
        if identity == GATEWAY:
            created = root.auth.token.create(policies=["default"], ttl="10m")
        else:
            created = root.auth.token.create(
                policies=[f"likeness-{identity}"], no_default_policy=True, ttl="10m"
            )
        made[identity] = hvac.Client(url=infra.endpoints.vault_addr, token=created["auth"]["client_token"])
    yield made
    for client in made.values():
        root.auth.token.revoke(client.token)


def keys_of(client: hvac.Client) -> RetentionKeys:
    """The shared SubjectKeys (plus retention's listing) on a service's token: the code paths it runs."""
    return RetentionKeys(client)


def _subject() -> str:
    return f"sub_vault{uuid.uuid4().hex[:16]}"


@pytest.fixture
def prepared(root: hvac.Client) -> tuple[str, str]:
    """A live subject key (made with the root token) and a data key wrapped by it."""
    subject = _subject()
    admin = SubjectKeys(root)
    admin.create(subject)
    return subject, admin.data_key(subject).wrapped


def _operation(name: str, keys: RetentionKeys, subject: str, wrapped: str) -> Callable[[], object]:
    fresh = _subject()
    return {
        "create": lambda: keys.create(fresh),
        "exists": lambda: keys.exists(subject),
        "list": keys.subject_ids,
        "created_at": lambda: keys.created_at(subject),
        "data_key": lambda: keys.data_key(subject),
        "unwrap": lambda: keys.unwrap(subject, [wrapped]),
        "destroy": lambda: keys.destroy(subject),
    }[name]


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("identity", [*IDENTITIES, GATEWAY])
def test_each_identity_can_do_exactly_its_operations(
    identity: str,
    operation: str,
    clients: dict[str, hvac.Client],
    root: hvac.Client,
    prepared: tuple[str, str],
) -> None:
    subject, wrapped = prepared
    keys = keys_of(clients[identity])
    run = _operation(operation, keys, subject, wrapped)
    if operation not in ALLOWED[identity]:
        with pytest.raises(KeyAccessDenied):
            run()
        assert SubjectKeys(root).exists(subject), "a refused operation changed nothing"
        return
    result = run()
    if operation == "destroy":
        assert result is True
        assert not SubjectKeys(root).exists(subject)
    elif operation == "exists":
        assert result is True
    elif operation == "list":
        assert subject in result  # type: ignore[operator]
    elif operation == "created_at":
        assert result is not None
    elif operation == "unwrap":
        assert len(result[0]) == 32  # type: ignore[index]
    elif operation == "data_key":
        assert result.key_name == key_name(subject)  # type: ignore[attr-defined]
    elif operation == "create":
        config = root.secrets.transit.read_key(str(result))["data"]
        assert config["exportable"] is False
        assert config["allow_plaintext_backup"] is False
        assert config["deletion_allowed"] is True


def test_a_subject_lives_and_dies_through_the_identities_tokens(clients: dict[str, hvac.Client]) -> None:
    """The journey's Vault calls, each made with the token of the identity that makes it in production."""
    subject = _subject()
    retention, ingest, trainer_worker, renderer, renderer_worker = (
        keys_of(clients[name])
        for name in ("retention", "ingest", "trainer-worker", "renderer", "renderer-worker")
    )
    retention.create(subject)
    photo_key = ingest.data_key(subject)  # ingest seals a crop
    assert ingest.unwrap(subject, [photo_key.wrapped]) == [photo_key.plaintext]  # and reads templates
    assert trainer_worker.unwrap(subject, [photo_key.wrapped]) == [photo_key.plaintext]  # opens the photo
    lora_key = trainer_worker.data_key(subject)  # and seals the LoRA
    assert renderer_worker.unwrap(subject, [lora_key.wrapped]) == [lora_key.plaintext]  # opens it
    image_key = renderer_worker.data_key(subject)  # seals a headshot
    assert renderer.unwrap(subject, [image_key.wrapped]) == [image_key.plaintext]  # FetchImage (serve)
    trainer = keys_of(clients["trainer"])
    assert trainer.unwrap(subject, [lora_key.wrapped]) == [lora_key.plaintext]  # ExportModels (serve)
    assert retention.destroy(subject) is True
    # After erasure the calls fail as "destroyed", not as "denied": the policies hide nothing.
    for keys in (ingest, trainer_worker, renderer_worker):
        with pytest.raises(KeyDestroyed):
            keys.unwrap(subject, [photo_key.wrapped])
        with pytest.raises(KeyDestroyed):
            keys.data_key(subject)
    with pytest.raises(KeyDestroyed):
        renderer.unwrap(subject, [image_key.wrapped])


@pytest.mark.parametrize("serve", ["trainer", "renderer"])
def test_a_serve_role_cannot_do_its_workers_vault_work(
    serve: str, clients: dict[str, hvac.Client], prepared: tuple[str, str]
) -> None:
    """A compromised API pod cannot seal new data under a subject's key (it opens only what it exports)."""
    subject, wrapped = prepared
    api = keys_of(clients[serve])
    worker = keys_of(clients[f"{serve}-worker"])
    assert len(worker.unwrap(subject, [wrapped])[0]) == 32
    assert worker.data_key(subject).key_name == key_name(subject)
    with pytest.raises(KeyAccessDenied):
        api.data_key(subject)


def _raw(client: hvac.Client, method: str, path: str, body: dict[str, object] | None = None) -> object:
    adapter = client.adapter
    if method == "GET":
        return adapter.get(f"/v1/{path}")
    if method == "LIST":
        return adapter.list(f"/v1/{path}")
    if method == "DELETE":
        return adapter.delete(f"/v1/{path}")
    return adapter.post(f"/v1/{path}", json=body or {})


SUBJECT_KEY = "likeness-subject-{subject}"
#: Requests no service's code makes; every one must be refused for every service.
NEVER = [
    ("POST", "transit/encrypt/" + SUBJECT_KEY, {"plaintext": "aGVsbG8="}),
    ("POST", "transit/datakey/wrapped/" + SUBJECT_KEY, {}),
    ("GET", "transit/export/encryption-key/" + SUBJECT_KEY, None),
    ("GET", "transit/backup/" + SUBJECT_KEY, None),
    ("POST", "transit/keys/" + SUBJECT_KEY + "/trim", {"min_available_version": 1}),
    ("POST", "transit/keys/" + SUBJECT_KEY + "/config", {"exportable": True}),
    ("POST", "transit/keys/" + SUBJECT_KEY + "/config", {"min_decryption_version": 1}),
    ("POST", "transit/keys/likeness-subject-new{subject}", {"type": "aes256-gcm96", "exportable": True}),
    ("POST", "transit/keys/likeness-subject-new{subject}", {"type": "rsa-2048"}),
    ("POST", "transit/keys/other-key-{subject}", {"type": "aes256-gcm96"}),
    ("POST", "transit/datakey/plaintext/other-key-{subject}", {}),
    ("POST", "transit/decrypt/other-key-{subject}", {"ciphertext": "vault:v1:AAAA"}),
    ("POST", "transit/restore", {"backup": "AAAA"}),
    ("GET", "sys/policies/acl/likeness-retention", None),
    ("POST", "sys/policies/acl/likeness-ingest", {"policy": 'path "*" { capabilities = ["sudo"] }'}),
    ("GET", "sys/mounts", None),
    ("POST", "auth/token/create", {"policies": ["likeness-retention"]}),
]


@pytest.mark.parametrize(("method", "path", "body"), NEVER, ids=[f"{m} {p}" for m, p, _ in NEVER])
@pytest.mark.parametrize("identity", [*IDENTITIES, GATEWAY])
def test_requests_no_service_makes_are_refused(
    identity: str,
    method: str,
    path: str,
    body: dict[str, object] | None,
    clients: dict[str, hvac.Client],
    prepared: tuple[str, str],
) -> None:
    subject, _ = prepared
    with pytest.raises(hvac.exceptions.Forbidden):
        _raw(clients[identity], method, path.format(subject=subject), body)


def test_roles_bind_one_service_account_with_short_lived_tokens(root: hvac.Client, auth_mount: str) -> None:
    for identity in IDENTITIES:
        role = root.read(f"auth/{auth_mount}/role/likeness-{identity}")["data"]
        assert role["bound_service_account_names"] == [f"{SA_PREFIX}-{identity}"]
        assert role["bound_service_account_namespaces"] == [NAMESPACE]
        assert role["token_policies"] == [f"likeness-{identity}"]
        assert role["token_no_default_policy"] is True
        assert role["audience"] == "vault"
        assert 0 < role["token_ttl"] <= 3600
        assert 0 < role["token_max_ttl"] <= 3600
    roles = root.list(f"auth/{auth_mount}/role")["data"]["keys"]
    assert sorted(roles) == sorted(f"likeness-{identity}" for identity in IDENTITIES), (
        "the gateway has no role"
    )
    policies = root.sys.list_acl_policies()["data"]["keys"]
    assert "likeness-gateway" not in policies
    assert {f"likeness-{identity}" for identity in IDENTITIES} <= set(policies)


def test_every_identity_has_a_policy_and_a_role_file() -> None:
    """deploy/vault holds exactly the identities the bootstrap script applies (and this test checks)."""
    vault = ROOT / "deploy" / "vault"
    assert sorted(path.stem for path in (vault / "policies").glob("*.hcl")) == sorted(IDENTITIES)
    assert sorted(path.stem for path in (vault / "roles").glob("*.json")) == sorted(IDENTITIES)
    assert f"IDENTITIES=({' '.join(IDENTITIES)})" in BOOTSTRAP.read_text()
