"""Secrets reach every process as files, one purpose each: never an environment variable, only what it uses.

Production settings refuse a secret given as an environment variable (`likeness.config`), so a chart that
passed one would not start. The secret settings are read from the settings classes themselves
(`likeness.config.secret_field_names`), so these tests follow the code: a new `SecretStr` setting is
covered the day it is added. The scenarios and their renders come from conftest.py.
"""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import pytest

from gateway.config import GatewaySettings
from ingest.config import IngestSettings
from likeness.config import SECRETS_DIR_VARIABLE, CommonSettings, secret_field_names, secrets_in_environment
from renderer.config import RendererSettings
from retention.config import RetentionSettings
from trainer.config import TrainerSettings

RELEASE = "demo"
SECRETS_DIR = "/var/run/secrets/likeness"
SETTINGS: dict[str, type[CommonSettings]] = {
    "gateway": GatewaySettings,
    "retention": RetentionSettings,
    "ingest": IngestSettings,
    "trainer": TrainerSettings,
    "renderer": RendererSettings,
}
DEVELOPMENT = {
    "config": {"env": "development"},
    "nats": {"url": "nats://nats:4222"},
    "auth": {"jwtDevSecretExistingSecret": "dev-jwt"},
}

Manifest = dict[str, Any]
Rendered = Any  # conftest.Rendered


def secret_settings() -> set[str]:
    """Every secret setting of every service (the file names a secrets directory may hold)."""
    names: set[str] = set()
    for settings_class in SETTINGS.values():
        names |= set(secret_field_names(settings_class))
    return names


def component(doc: Manifest) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def identity(kind: str) -> str:
    """The process identity of a workload: trainer-serve is `trainer`, trainer-work `trainer-worker`."""
    service, _, role = kind.partition("-")
    return f"{service}-worker" if role == "work" else service


def pod_spec(doc: Manifest) -> Manifest:
    spec: Manifest = doc["spec"]["template"]["spec"] if doc["kind"] in ("Deployment", "Job") else doc["spec"]
    return spec


# --- never an environment variable ------------------------------------------------------------------------


def secrets_in_the_environment(rendered: Rendered) -> list[str]:
    """Every way a rendered container would get a secret through its environment (empty: none)."""
    variables = {f"LIKENESS_{name}".upper() for name in secret_settings()}
    found: list[str] = []
    for doc in rendered.pods:  # the Deployments, the bootstrap Job, the helm test pod
        spec = pod_spec(doc)
        for container in spec["containers"] + spec.get("initContainers", []):
            where = f"{doc['metadata']['name']}/{container['name']}"
            for entry in container.get("env", []):
                if "secretKeyRef" in entry.get("valueFrom", {}):
                    found.append(f"{where}: {entry['name']} from a Secret")
                if entry["name"].upper() in variables:
                    found.append(f"{where}: {entry['name']} is a secret setting")
            found += [
                f"{where}: every key of Secret {source['secretRef']['name']}"
                for source in container.get("envFrom", [])
                if "secretRef" in source
            ]
    for config_map in rendered.of_kind("ConfigMap"):
        found += [
            f"ConfigMap {config_map['metadata']['name']}: {key}"
            for key in config_map.get("data", {})
            if key.upper() in variables
        ]
    return found


def test_no_secret_is_an_environment_variable(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    assert secrets_in_the_environment(rendered) == []
    assert not rendered.of_kind("Secret"), "the chart never creates a Secret: it only references them"


def test_no_secret_is_an_environment_variable_in_development(render: Any) -> None:
    rendered = render(DEVELOPMENT)
    assert secrets_in_the_environment(rendered) == []
    assert "jwt_dev_secret" in rendered.secret_files("gateway")


def test_the_environment_check_can_fail(render: Any) -> None:
    """A secret by secretKeyRef, or by value under a secret setting's name, is each caught."""
    by_value = render({"ingest": {"extraEnv": [{"name": "LIKENESS_S3_SECRET_KEY", "value": "x" * 40}]}})
    assert secrets_in_the_environment(by_value) == [
        f"{RELEASE}-likeness-ingest/ingest: LIKENESS_S3_SECRET_KEY is a secret setting"
    ]
    by_reference = render(DEVELOPMENT)
    container = pod_spec(by_reference.deployment("gateway"))["containers"][0]
    container["env"].append({"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})
    assert secrets_in_the_environment(by_reference) == [
        f"{RELEASE}-likeness-gateway/gateway: X from a Secret"
    ]


def test_the_secret_settings_come_from_the_code() -> None:
    """The list the checks above use is the settings classes' own, so a new secret setting is covered."""
    assert {
        "s3_secret_key", "vault_token", "hmac_secret", "idempotency_secret", "watermark_key", "nats_password"
    } <= secret_settings()  # fmt: skip


# --- files, one purpose each ------------------------------------------------------------------------------


def expected_secret_files(scenario: str, process: str) -> dict[str, tuple[str, str]]:
    """What each process may read, and from which Secret and key: what it uses, and nothing else."""
    production = scenario == "production"
    own = f"acme-{process}" if production else f"likeness-{process}"
    files: dict[str, tuple[str, str]] = {}
    if production:  # every process logs in to NATS as its own user
        files["nats_password"] = (own, "nats_password")
    if process == "gateway":  # its own key only: no HMAC secret, no storage right
        files["idempotency_secret"] = (
            ("acme-idempotency", "key")
            if production
            else ("likeness-gateway-idempotency", "idempotency-secret")
        )
        return files
    files |= {"s3_access_key": (own, "s3_access_key"), "s3_secret_key": (own, "s3_secret_key")}
    # The audit pseudonym secret: every process that writes audit records about people, never the gateway.
    files["audit_pseudonym_secret"] = (
        ("acme-audit-pseudonym", "secret")
        if production
        else ("likeness-audit-pseudonym", "audit-pseudonym-secret")
    )
    if process == "retention":  # the HMAC secret is retention's alone
        files["hmac_secret"] = ("acme-hmac", "secret") if production else ("likeness-hmac", "hmac-secret")
        receipts = "acme-receipts" if production else "likeness-receipts"
        files["receipt_signing_key"] = (receipts, "signing-key")
    if process.startswith("renderer"):
        marking = "acme-marking" if production else "likeness-renderer-marking"
        files["watermark_key"] = (marking, "watermark-key")
        if process == "renderer-worker":  # only the workers sign outputs
            files["c2pa_cert_chain"] = (marking, "c2pa-cert-chain")
            files["c2pa_private_key"] = (marking, "c2pa-private-key")
    return files


def test_each_process_gets_only_the_secrets_it_uses(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    for doc in rendered.of_kind("Deployment"):
        kind = component(doc)
        files = rendered.secret_files(kind)
        assert files == expected_secret_files(name, identity(kind)), kind
        # Each file is a secret setting of this process's own settings class: nothing it would not read.
        readable = set(secret_field_names(SETTINGS[kind.split("-")[0]]))
        assert set(files) <= readable, kind


def test_only_retention_holds_the_hmac_secret(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    holders = {
        component(doc)
        for doc in rendered.of_kind("Deployment")
        if "hmac_secret" in rendered.secret_files(component(doc))
    }
    assert holders == {"retention"}


def test_the_audit_pseudonym_secret_is_mounted_where_audit_records_are_written(
    scenario: tuple[str, Rendered],
) -> None:
    """Ingest, trainer and renderer (both roles) and retention write records naming a person by pseudonym;
    the gateway writes none and never holds the secret."""
    _, rendered = scenario
    holders = {
        component(doc)
        for doc in rendered.of_kind("Deployment")
        if "audit_pseudonym_secret" in rendered.secret_files(component(doc))
    }
    deployments = {component(doc) for doc in rendered.of_kind("Deployment")}
    assert holders == deployments - {"gateway"}
    assert "gateway" in deployments


def test_secret_files_are_one_read_only_projected_volume(scenario: tuple[str, Rendered]) -> None:
    """Mode 0400 (the pod's fsGroup lets uid 10001 read them), read-only, only the keys listed."""
    _, rendered = scenario
    for doc in rendered.of_kind("Deployment"):
        spec = pod_spec(doc)
        (container,) = spec["containers"]
        env = {entry["name"]: entry for entry in container["env"]}
        assert env[SECRETS_DIR_VARIABLE]["value"] == SECRETS_DIR, component(doc)
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == SECRETS_DIR]
        assert mount["readOnly"] is True
        assert "subPath" not in mount, "a subPath mount would never see a rotated Secret"
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert volume["projected"]["defaultMode"] == 0o400
        assert spec["securityContext"]["fsGroup"] == 10001
        for source in volume["projected"]["sources"]:
            assert set(source) == {"secret"}, "secret files only (the Vault token has its own volume)"
            # Items always listed: without them every key of the Secret would be projected. Never optional:
            # a missing key stops the pod instead of leaving a setting at its default.
            assert source["secret"]["items"]
            assert "optional" not in source["secret"]
        names = [source["secret"]["name"] for source in volume["projected"]["sources"]]
        assert len(names) == len(set(names)), "one source per Secret"


def test_every_process_starts_in_production_with_what_the_chart_gives_it(
    scenario: tuple[str, Rendered], process_settings: Any
) -> None:
    """Each process's settings, read from the ConfigMap, its env and its secret files, pass the production
    checks: nothing secret in the environment, every secret it needs is there."""
    _, rendered = scenario
    for doc in rendered.of_kind("Deployment"):
        settings = process_settings(rendered, component(doc))
        assert settings.is_production
        assert secrets_in_environment(type(settings)) == []


def test_the_production_check_can_fail(render: Any, process_settings: Any) -> None:
    """Without its C2PA key, a renderer worker that signs would refuse to start: the check above bites."""
    rendered = render({})
    volume = next(
        v for v in pod_spec(rendered.deployment("renderer-work"))["volumes"] if v["name"] == "secrets"
    )
    for source in volume["projected"]["sources"]:
        source["secret"]["items"] = [i for i in source["secret"]["items"] if i["path"] != "c2pa_private_key"]
    with pytest.raises(ValueError, match="C2PA"):
        process_settings(rendered, "renderer-work")


def test_nats_users_follow_the_values(renders: dict[str, Rendered]) -> None:
    for name, rendered in renders.items():
        for doc in rendered.of_kind("Deployment"):
            env = {entry["name"]: entry for entry in pod_spec(doc)["containers"][0]["env"]}
            user = env.get("LIKENESS_NATS_USER", {}).get("value")
            # Named after the identity, as the shipped NATS allow-lists (files/policies) expect.
            expected = identity(component(doc)) if name == "production" else None
            assert user == expected, (name, component(doc))


def test_the_dev_token_secret_goes_where_tokens_are_verified_in_development_only(
    render: Any, process_settings: Any
) -> None:
    """The gateway and every gRPC service verify end users' tokens; the GPU workers serve no call."""
    rendered = render(DEVELOPMENT)
    for doc in rendered.of_kind("Deployment"):
        files = rendered.secret_files(component(doc))
        if component(doc).endswith("-work"):
            assert "jwt_dev_secret" not in files, component(doc)
        else:
            assert files["jwt_dev_secret"] == ("dev-jwt", "jwt-dev-secret"), component(doc)
    settings = process_settings(rendered, "retention")
    assert settings.jwt_dev_secret.get_secret_value().startswith("stand-in for dev-jwt/")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"credentials": {"ingest": {"existingSecret": ""}}}, "credentials.ingest.existingSecret"),
        (
            {"credentials": {"trainer-worker": {"existingSecret": ""}}},
            "credentials.trainer-worker.existingSecret",
        ),
        (
            {"credentials": {"gateway": {"existingSecret": "", "natsUser": "gateway"}}},
            "credentials.gateway.existingSecret",
        ),
        ({"auth": {"jwtDevSecretExistingSecret": "dev-jwt"}}, "auth.jwtDevSecretExistingSecret"),
    ],
)
def test_a_missing_or_misplaced_secret_fails_the_render(
    render: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(values)


def test_a_process_that_is_not_deployed_needs_no_secret(render: Any) -> None:
    values = {
        "trainer": {"work": {"enabled": False}},
        "credentials": {"trainer-worker": {"existingSecret": ""}},
    }
    assert "trainer-work" not in {component(doc) for doc in render(values).of_kind("Deployment")}
    without_nats_user = {"credentials": {"gateway": {"existingSecret": ""}}}
    assert "nats_password" not in render(without_nats_user).secret_files("gateway")
