"""The likeness chart's values: strict schema, documented defaults, safe refusals and a clean `helm lint`.

Uses helm-python-sdk (Helm's Go engine through a C library): no helm binary, cluster or network needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

CHART_DIR = Path(__file__).resolve().parents[1] / "helm" / "likeness"
WARNING = 2  # helm lint severities: 1 info, 2 warning, 3 error

# Values whose contents are Kubernetes objects or free-form maps passed through as they are.
PASS_THROUGH = {
    "commonLabels",
    "annotations",
    "podAnnotations",
    "nodeSelector",
    "affinity",
    "requests",
    "limits",
    "behavior",  # an autoscaling/v2 HorizontalPodAutoscalerBehavior
    "perTenant",  # quotas per tenant: keyed by tenant id, each checked against the quota names
}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def defaults() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    return values


def owned_objects(values: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Paths of every mapping in the defaults whose keys the chart defines (so an unknown key is a typo)."""
    yield path
    for key, value in values.items():
        if isinstance(value, dict) and key not in PASS_THROUGH:
            yield from owned_objects(value, (*path, key))


def with_value(path: tuple[str, ...], key: str, value: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    node = values
    for part in path:
        node = node.setdefault(part, {})
    node[key] = value
    return values


# --- schema -----------------------------------------------------------------------------------------------


def test_defaults_satisfy_the_schema(chart: helm.Chart, defaults: dict[str, Any]) -> None:
    chart.validate_schema(defaults)
    assert chart.schema is not None
    assert set(chart.schema["properties"]) - {"global"} == set(defaults)


def test_schema_rejects_a_typo_in_every_object_the_chart_owns(
    chart: helm.Chart, defaults: dict[str, Any]
) -> None:
    paths = list(owned_objects(defaults))
    assert len(paths) > 40  # the walk reached every service and role
    accepted, misreported = [], []
    for path in paths:
        where = ".".join(path) or "<top level>"
        try:
            chart.validate_schema(with_value(path, "replicaz", 1))
        except helm.HelmValuesError as error:
            if "replicaz" not in str(error):
                misreported.append(where)
            continue
        accepted.append(where)
    assert accepted == []
    assert misreported == []


@pytest.mark.parametrize(
    "values",
    [
        {"gateway": {"replicas": -1}},
        {"ingest": {"grpcPort": 70000}},
        {"trainer": {"work": {"gpu": {"count": 0}}}},
        {"renderer": {"work": {"scratch": {"sizeLimit": "lots"}}}},
        {"retention": {"podDisruptionBudget": {"enabled": True, "maxUnavailable": "half"}}},
        {"gateway": {"image": {"repository": "likeness/gateway", "digest": "latest"}}},
        # A digest is "sha256:" and 64 lowercase hex digits, as registries and `crane digest` print it.
        {"ingest": {"image": {"digest": "sha512:" + "a" * 64}}},
        {"retention": {"image": {"digest": "a" * 64}}},
        {"trainer": {"image": {"digest": "sha256:" + "a" * 63}}},
        {"renderer": {"image": {"digest": "sha256:" + "A" * 64}}},
        {"image": {"requireDigests": "yes"}},
        {"config": {"logLevel": "verbose"}},
        {"s3": {"existingSecret": "Not_A_Name"}},
        {"vault": {"tokenExpirationSeconds": 60}},
        {"baseModel": {"mountPath": "relative/path"}},
        {"gateway": {"extraEnv": [{"value": "no name"}]}},
        {"ingest": {"resources": {"limit": {"memory": "1Gi"}}}},
        {"retention": {"autoscaling": {"enabled": True}}},
        {"gateway": {"vaultRole": "likeness-gateway"}},
        {"keda": {"prometheusServerAddress": "prometheus:9090"}},
        {"networkPolicy": {"egress": {"s3": {"to": [{"cidr": "10.0.0.0/8"}], "ports": []}}}},
        {"networkPolicy": {"egress": {"vault": {"to": [], "ports": [0]}}}},
        {"trainer": {"work": {"autoscaling": {"lagThreshold": 0}}}},
        {"gateway": {"autoscaling": {"targetCPUUtilizationPercentage": 0}}},
        {"tls": {"caBundle": {"existingConfigMap": "Bad_Name"}}},
        {"gateway": {"rateLimit": {"perSecond": 0}}},
        {"gateway": {"rateLimit": {"uploadBurst": 0}}},
        {"gateway": {"rateLimit": {"burst": 1.5}}},
        {"gateway": {"requestTimeoutSeconds": 0}},
        {"gateway": {"subjectStatusCacheSeconds": 11}},
        {"gateway": {"idempotency": {"ttlSeconds": 30}}},
        {"gateway": {"idempotency": {"existingSecret": ""}}},
        {"credentials": {"gateway": {"natsUser": "two words"}}},
        {"credentials": {"ingest": {"existingSecret": "Not_A_Name"}}},
        {"credentials": {"bootstrapper": {"existingSecret": "x", "natsUser": ""}}},
        {"auth": {"jwtDevSecretExistingSecret": "Bad_Name"}},
        {"config": {"healthPort": 0}},
        {"tls": {"certManager": {"duration": "1 day"}}},
        {"tls": {"certManager": {"renewBefore": "-8h"}}},
        {"tls": {"certManager": {"issuerRef": {"name": "ca", "namespace": "elsewhere"}}}},
        {"tls": {"certManager": {"clusterDomain": "Cluster_Local"}}},
        {"tls": {"existingSecrets": {"gateway": "Bad_Name"}}},
        {"tls": {"existingSecrets": {"trainer-worker": "workers-have-no-grpc-hop"}}},
        {"credentials": {"bootstrap": {"natsUser": ""}}},
        {"credentials": {"bootstrap": {"existingSecret": ""}}},
        {"networkPolicy": {"probesFrom": [{"cidr": "10.0.0.0/8"}]}},
        {"bootstrap": {"backoffLimit": -1}},
        {"bootstrap": {"activeDeadlineSeconds": 5}},
        {"bootstrap": {"auditMaxBytes": "2Gi"}},
        {"bootstrap": {"image": {"repository": "elsewhere"}}},
        {"trainer": {"work": {"vaultRole": 5}}},
        {"renderer": {"work": {"serviceAccount": {"create": "yes"}}}},
        {"quotas": {"concurrentRenders": -1}},
        {"quotas": {"trainingSteps": 1.5}},
        {"quotas": {"gpuSecondsPerDay": "8h"}},
        {"quotas": {"perTenant": {"Acme": {"concurrent_renders": 1}}}},
        {"quotas": {"perTenant": {"acme": {"concurrent_render": 1}}}},
        {"quotas": {"perTenant": {"acme": {"gpu_seconds_per_day": -1}}}},
        {"quotas": {"perTenant": {"acme": 64}}},
    ],
    ids=lambda values: "/".join(str(part) for part in _first_path(values)),
)
def test_schema_rejects_bad_values(chart: helm.Chart, values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)


@pytest.mark.parametrize("bound", ["requests", "limits"])
def test_schema_requires_bounded_resources(chart: helm.Chart, bound: str) -> None:
    """Values merge into the defaults; null is how a user deletes a default (`--set ...requests=null`)."""
    with pytest.raises(helm.HelmValuesError, match=bound):
        chart.render({"trainer": {"work": {"resources": {bound: None}}}}, name="demo")


def _first_path(values: dict[str, Any]) -> list[str]:
    path: list[str] = []
    node: Any = values
    while isinstance(node, dict) and node:
        key = next(iter(node))
        path.append(key)
        node = node[key]
    return path


@pytest.mark.parametrize(
    "values",
    [
        {"s3": {"secretKey": "hunter2"}},
        {"s3": {"accessKey": "AKIA..."}},
        {"hmac": {"secret": "hunter2"}},
        {"vault": {"token": "s.xyz"}},
        {"nats": {"password": "hunter2"}},
        {"retention": {"receipts": {"signingKey": "abc"}}},
        {"renderer": {"marking": {"watermarkKey": "abc"}}},
        {"auth": {"jwtDevSecret": "abc"}},
        {"credentials": {"ingest": {"s3SecretKey": "abc"}}},
        {"credentials": {"gateway": {"natsPassword": "abc"}}},
        {"gateway": {"idempotency": {"secret": "abc"}}},
        {"credentials": {"bootstrap": {"s3SecretKey": "abc"}}},
        # A certificate's key only from its Secret (cert-manager's or the operator's), never a value.
        {"tls": {"existingSecrets": {"gateway": {"tls.key": "-----BEGIN PRIVATE KEY-----"}}}},
        {"tls": {"certManager": {"privateKey": "-----BEGIN PRIVATE KEY-----"}}},
        # NATS credentials never ride in the URL (it lands in a ConfigMap).
        {"nats": {"url": "tls://likeness:hunter2@nats:4222"}},
        # Secrets reach processes as files: not even extraEnv may reference one.
        {"ingest": {"extraEnv": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}},
        {"renderer": {"work": {"extraEnv": [{"name": "X", "valueFrom": {"secretKeyRef": {}}}]}}},
    ],
)
def test_secrets_cannot_be_passed_as_values(chart: helm.Chart, values: dict[str, Any]) -> None:
    """Credentials only come from existing Secrets; the chart has no value that would inline one."""
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name="demo")


# --- refusals in production -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"nats": {"url": "nats://nats:4222"}}, "nats.url"),
        ({"s3": {"endpoint": "http://s3.local:8333"}}, "s3.endpoint"),
        ({"vault": {"addr": "http://vault:8200"}}, "vault.addr"),
        ({"auth": {"jwksUrl": "http://auth/jwks.json"}}, "auth.jwksUrl"),
        ({"config": {"otlpEndpoint": "http://otel:4317"}}, "config.otlpEndpoint must use https://"),
        ({"config": {"otlpEndpoint": "otel:4317"}}, "config.otlpEndpoint must use https://"),
    ],
)
def test_production_refuses_plaintext_endpoints(
    chart: helm.Chart, values: dict[str, Any], field: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(field)):
        chart.render(values, name="demo")


@pytest.mark.parametrize("audience", ["likeness", " likeness "])  # empty: the schema's minLength
def test_production_refuses_the_development_audience(chart: helm.Chart, audience: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape("auth.audience must be")):
        chart.render({"auth": {"audience": audience}}, name="demo")
    assert chart.render({"auth": {"audience": "likeness-api"}}, name="demo")


def test_other_environments_may_use_plaintext(chart: helm.Chart) -> None:
    values = {"config": {"env": "development"}, "nats": {"url": "nats://nats:4222"}}
    files = chart.render(values, name="demo")
    config = yaml.safe_load(files["likeness/templates/common-configmap.yaml"])
    assert config["data"]["LIKENESS_NATS_URL"] == "nats://nats:4222"


def test_existing_service_accounts_need_a_name(chart: helm.Chart) -> None:
    with pytest.raises(helm.HelmRenderError, match=r"gateway\.serviceAccount\.name"):
        chart.render({"gateway": {"serviceAccount": {"create": False}}}, name="demo")
    files = chart.render(
        {"gateway": {"serviceAccount": {"create": False, "name": "platform-gw"}}}, name="demo"
    )
    assert not files["likeness/templates/gateway-serviceaccount.yaml"].strip()
    deployment = yaml.safe_load(files["likeness/templates/gateway-deployment.yaml"])
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "platform-gw"


# --- documentation ----------------------------------------------------------------------------------------

KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w./-]*):(?P<rest>.*)$")


def undocumented_values(text: str) -> list[str]:
    """Keys of values.yaml with neither a "# --" comment right above nor a documented parent.

    A section (a key holding only more keys) needs no comment of its own; a key under a documented key
    is part of that value's example (resources, tolerations) and is covered by its parent's comment.
    """
    lines = text.splitlines()
    missing: list[str] = []
    covered_below: int | None = None  # indentation of the documented key whose block we are inside
    comment: list[str] = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if covered_below is not None and indent <= covered_below:
            covered_below = None
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        above, comment = comment, []
        if covered_below is not None:
            continue
        match = KEY.match(line)
        if not match:
            continue
        documented = any(entry.startswith("# --") for entry in above)
        following = next((n for n in lines[number + 1 :] if n.strip() and not n.strip().startswith("#")), "")
        has_block = not match["rest"].strip() and len(following) - len(following.lstrip()) > indent
        if documented:
            if has_block:
                covered_below = indent
        elif not has_block or following.strip().startswith("- "):
            missing.append(f"line {number + 1}: {match['key']}")
    return missing


def test_every_value_is_documented_in_place() -> None:
    assert undocumented_values((CHART_DIR / "values.yaml").read_text()) == []


def test_the_documentation_check_can_fail() -> None:
    text = "config:\n  # -- documented\n  env: production\n  logLevel: INFO\n"
    assert undocumented_values(text) == ["line 4: logLevel"]


# --- the schema documents itself ---------------------------------------------------------------------------


def undescribed_properties(schema: dict[str, Any]) -> list[str]:
    definitions = schema["definitions"]

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = definitions[node["$ref"].split("/")[-1]]
        return node

    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for key, child in resolve(node).get("properties", {}).items():
            where = f"{path}.{key}".lstrip(".")
            if "description" not in child and "description" not in resolve(child):
                missing.append(where)
            walk(child, where)

    walk(schema, "")
    return missing


def test_every_schema_property_has_a_description(chart: helm.Chart) -> None:
    assert chart.schema is not None
    assert undescribed_properties(chart.schema) == []


def test_the_description_check_can_fail() -> None:
    schema = {"definitions": {}, "properties": {"a": {"description": "x", "properties": {"b": {}}}}}
    assert undescribed_properties(schema) == ["a.b"]


# --- helm lint --------------------------------------------------------------------------------------------


def test_helm_lint_strict_is_clean_for_every_scenario(scenario_values: dict[str, dict[str, Any]]) -> None:
    """`helm lint --strict` of every scenario of the render tests, for the oldest and newest Kubernetes."""
    extra = {
        "development": {
            "config": {"env": "development"},
            "nats": {"url": "nats://nats:4222"},
            "auth": {"jwtDevSecretExistingSecret": "likeness-dev-jwt"},
        }
    }
    problems = {}
    for name, values in (scenario_values | extra).items():
        for kube_version in ("v1.29.0", "v1.33.0"):
            report = helm.lint(
                CHART_DIR, values, strict=True, namespace="likeness", kube_version=kube_version
            )
            found = report["errors"] + [m for m in report["messages"] if m["severity"] >= WARNING]
            if found:
                problems[(name, kube_version)] = found
    assert problems == {}
