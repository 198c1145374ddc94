"""Render the likeness chart under several value combinations and check what Kubernetes would receive.

Rendering uses helm-python-sdk (Helm's own Go engine through a C library), so no helm binary, cluster or
network is needed.
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
RELEASE = "demo"
NAMESPACE = "likeness"
PREFIX = f"{RELEASE}-likeness"

SERVICES = ("gateway", "ingest", "retention", "trainer", "renderer")
API_WORKLOADS = ("gateway", "ingest", "retention", "trainer-serve", "renderer-serve")
WORKERS = ("trainer-work", "renderer-work")
DIGEST = "sha256:" + "ab" * 32

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "workers-disabled": {"trainer": {"work": {"enabled": False}}, "renderer": {"work": {"enabled": False}}},
    "custom-images-no-networkpolicy": {
        "networkPolicy": {"enabled": False},
        "image": {"registry": "ghcr.io/acme/", "tag": "1.2.3", "pullPolicy": "Always"},
        "gateway": {"image": {"repository": "custom/gateway", "tag": "9.9.9"}},
        "ingest": {"image": {"repository": "custom/ingest", "digest": DIGEST}},
        "imagePullSecrets": [{"name": "acme-pull"}],
    },
    "restricted-callers": {
        "gateway": {
            "networkPolicy": {
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}]
            }
        },
        "retention": {"networkPolicy": {"extraFrom": [{"podSelector": {"matchLabels": {"app": "ops"}}}]}},
        "networkPolicy": {"metricsFrom": []},
        "config": {"otlpEndpoint": "https://otel.example.internal:4317"},
        "vault": {"tokenAudience": ""},
        "commonLabels": {"team": "likeness"},
    },
}

Manifest = dict[str, Any]


class Rendered:
    """The manifests of one render, grouped for lookups."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.docs: list[Manifest] = []
        self.hooks: list[Manifest] = []
        for path, text in files.items():
            if not path.endswith(".yaml"):  # NOTES.txt
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    (self.hooks if "/templates/tests/" in path else self.docs).append(doc)

    def of_kind(self, kind: str) -> list[Manifest]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def by_name(self, kind: str) -> dict[str, Manifest]:
        return {doc["metadata"]["name"]: doc for doc in self.of_kind(kind)}

    def deployment(self, component: str) -> Manifest:
        return self.by_name("Deployment")[f"{PREFIX}-{component}"]


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest, chart: helm.Chart) -> tuple[str, Rendered]:
    name: str = request.param
    return name, Rendered(chart.render(SCENARIOS[name], name=RELEASE, namespace=NAMESPACE))


def render(chart: helm.Chart, values: dict[str, Any]) -> Rendered:
    return Rendered(chart.render(values, name=RELEASE, namespace=NAMESPACE))


def component(doc: Manifest) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def pod_spec(doc: Manifest) -> Manifest:
    spec: Manifest = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]
    return spec


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- what is rendered -------------------------------------------------------------------------------------


def test_renders_one_deployment_per_workload(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    expected = set(API_WORKLOADS) | (set() if name == "workers-disabled" else set(WORKERS))
    assert {component(doc) for doc in rendered.of_kind("Deployment")} == expected
    assert len(rendered.of_kind("PodDisruptionBudget")) == len(expected)


def test_resource_names_are_unique_per_kind(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    seen = [(doc["kind"], doc["metadata"]["name"]) for doc in rendered.docs]
    assert len(seen) == len(set(seen))


def test_services_front_the_apis_only(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    services = rendered.by_name("Service")
    assert set(services) == {f"{PREFIX}-{service}" for service in SERVICES}
    pods = [doc["spec"]["template"]["metadata"]["labels"] for doc in rendered.of_kind("Deployment")]
    for service in services.values():
        selected = [labels for labels in pods if matches(service["spec"]["selector"], labels)]
        assert len(selected) == 1, service["metadata"]["name"]
        assert selected[0]["app.kubernetes.io/component"] in API_WORKLOADS
        assert service["spec"]["type"] == "ClusterIP"


def test_gateway_reaches_every_grpc_service_by_its_service_name(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    services = rendered.by_name("Service")
    env = env_of(pod_spec(rendered.deployment("gateway"))["containers"][0])
    for service in ("retention", "ingest", "trainer", "renderer"):
        host, port = env[f"LIKENESS_{service.upper()}_ADDR"]["value"].split(":")
        grpc_ports = [p["port"] for p in services[host]["spec"]["ports"] if p["name"] == "grpc"]
        assert grpc_ports == [int(port)]


# --- pod security -----------------------------------------------------------------------------------------


def test_every_pod_runs_restricted(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    pods = rendered.of_kind("Deployment") + rendered.hooks
    assert pods
    for doc in pods:
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert spec.get("hostNetwork", False) is False
        assert spec.get("hostPID", False) is False
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["runAsUser"] == 10001
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["privileged"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_nothing_is_written_to_disk(scenario: tuple[str, Rendered]) -> None:
    """The only writable volume is the GPU workers' memory-backed /tmp; nothing mounts a host path."""
    _, rendered = scenario
    for doc in rendered.of_kind("Deployment"):
        spec = pod_spec(doc)
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for volume in volumes.values():
            assert "hostPath" not in volume
            if "emptyDir" in volume:
                assert volume["emptyDir"]["medium"] == "Memory"
                assert volume["emptyDir"]["sizeLimit"]
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["readOnly"] is True
        for mount in spec["containers"][0]["volumeMounts"]:
            volume = volumes[mount["name"]]
            assert mount.get("readOnly", False) or "emptyDir" in volume, mount
        scratch = [m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert len(scratch) == (1 if component(doc) in WORKERS else 0)


def test_only_a_vault_token_is_projected(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    accounts = rendered.by_name("ServiceAccount")
    assert set(accounts) == {f"{PREFIX}-{service}" for service in SERVICES}
    assert all(account["automountServiceAccountToken"] is False for account in accounts.values())
    for doc in rendered.of_kind("Deployment"):
        spec = pod_spec(doc)
        assert spec["serviceAccountName"] in accounts
        service = component(doc).split("-")[0]
        assert spec["serviceAccountName"] == f"{PREFIX}-{service}"
        (token,) = [volume for volume in spec["volumes"] if "projected" in volume]
        (source,) = token["projected"]["sources"]
        assert set(source) == {"serviceAccountToken"}
        assert source["serviceAccountToken"].get("audience") == (
            None if name == "restricted-callers" else "vault"
        )
        assert source["serviceAccountToken"]["expirationSeconds"] <= 3600
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts[token["name"]]["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"
        env = env_of(spec["containers"][0])
        assert env["LIKENESS_VAULT_ROLE"]["value"] == f"likeness-{service}"


# --- resources and probes ---------------------------------------------------------------------------------


def test_every_container_has_resources(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    for doc in rendered.of_kind("Deployment") + rendered.hooks:
        for container in pod_spec(doc)["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), doc["metadata"]["name"]
            assert "memory" in resources["limits"], doc["metadata"]["name"]


def test_every_deployment_container_has_probes(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    for doc in rendered.of_kind("Deployment"):
        container = pod_spec(doc)["containers"][0]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        kind = component(doc)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert probe in container, (kind, probe)
        if kind == "gateway":
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        elif kind in WORKERS:
            for probe in ("startupProbe", "readinessProbe"):
                assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        else:
            for probe in ("startupProbe", "readinessProbe"):
                assert container[probe]["grpc"]["port"] == ports["grpc"], (kind, probe)
        if kind != "gateway":
            # Dependency health gates readiness only: liveness just asks whether the process answers.
            assert container["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def test_workers_get_a_gpu_and_the_base_model(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    deployments = {component(doc): doc for doc in rendered.of_kind("Deployment")}
    for kind, doc in deployments.items():
        spec = pod_spec(doc)
        container = spec["containers"][0]
        gpu_request = container["resources"]["requests"].get("nvidia.com/gpu")
        if kind in WORKERS:
            assert gpu_request == 1
            assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
            assert spec["nodeSelector"]
            assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
            assert container["args"] == ["work"]
            assert {port["name"] for port in container["ports"]} == {"metrics"}
            claim = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
            assert [v["persistentVolumeClaim"]["claimName"] for v in claim] == ["likeness-base-model"]
            assert doc["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
        else:
            assert gpu_request is None
            assert "nodeSelector" not in spec
        if kind.startswith(("trainer", "renderer")):
            assert env_of(container)["LIKENESS_BASE_MODEL"]["value"] == "/models/base"
        visible = env_of(container).get("NVIDIA_VISIBLE_DEVICES", {}).get("value")
        assert visible == ("void" if kind in ("trainer-serve", "renderer-serve") else None), kind
    if name == "workers-disabled":
        assert not set(WORKERS) & set(deployments)


# --- configuration and secrets ----------------------------------------------------------------------------

SECRET_NAME = re.compile(r"SECRET|ACCESS_KEY|PASSWORD|TOKEN|PRIVATE", re.IGNORECASE)
COMMON_ENV = {
    "LIKENESS_ENV", "LIKENESS_LOG_LEVEL", "LIKENESS_METRICS_PORT", "LIKENESS_NATS_URL",
    "LIKENESS_S3_ENDPOINT", "LIKENESS_S3_BUCKET", "LIKENESS_S3_REGION", "LIKENESS_S3_ACCESS_KEY",
    "LIKENESS_S3_SECRET_KEY", "LIKENESS_VAULT_ADDR", "LIKENESS_VAULT_AUTH", "LIKENESS_VAULT_ROLE",
    "LIKENESS_VAULT_TRANSIT_MOUNT", "LIKENESS_HMAC_SECRET",
}  # fmt: skip
SECRET_REFERENCES = {
    "LIKENESS_S3_ACCESS_KEY": {"name": "likeness-s3", "key": "access-key"},
    "LIKENESS_S3_SECRET_KEY": {"name": "likeness-s3", "key": "secret-key"},
    "LIKENESS_HMAC_SECRET": {"name": "likeness-hmac", "key": "hmac-secret"},
}


def test_no_secret_value_is_inlined(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    assert not rendered.of_kind("Secret")
    for config_map in rendered.of_kind("ConfigMap"):
        assert not [key for key in config_map["data"] if SECRET_NAME.search(key)]
    for doc in rendered.of_kind("Deployment"):
        for container in pod_spec(doc)["containers"]:
            for entry in container["env"]:
                if SECRET_NAME.search(entry["name"]):
                    assert "value" not in entry, entry["name"]
                    assert set(entry["valueFrom"]) == {"secretKeyRef"}, entry["name"]
            references = {
                name: entry["valueFrom"]["secretKeyRef"] for name, entry in env_of(container).items()
                if "valueFrom" in entry
            }  # fmt: skip
            assert references == SECRET_REFERENCES


def test_every_process_gets_the_shared_configuration(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    config_maps = rendered.by_name("ConfigMap")
    for doc in rendered.of_kind("Deployment"):
        container = pod_spec(doc)["containers"][0]
        (source,) = container["envFrom"]
        data = config_maps[source["configMapRef"]["name"]]["data"]
        names = set(data) | set(env_of(container))
        assert names >= COMMON_ENV, COMMON_ENV - names
        assert data["LIKENESS_ENV"] == "production"
        assert data["LIKENESS_VAULT_AUTH"] == "kubernetes"
        assert data["LIKENESS_NATS_URL"].startswith("tls://")
        assert data["LIKENESS_S3_ENDPOINT"].startswith("https://")
        assert data["LIKENESS_VAULT_ADDR"].startswith("https://")
        assert ("LIKENESS_OTLP_ENDPOINT" in data) == (name == "restricted-callers")
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports["metrics"] == int(data["LIKENESS_METRICS_PORT"])
        kind = component(doc)
        if kind == "gateway":
            assert int(env_of(container)["LIKENESS_HTTP_PORT"]["value"]) == ports["http"]
            assert {"LIKENESS_JWKS_URL", "LIKENESS_JWT_ISSUER", "LIKENESS_JWT_AUDIENCE"} <= names
            assert container["command"] == ["python", "-m", "gateway"]
        elif kind in WORKERS:
            assert "LIKENESS_GRPC_PORT" not in names
        else:
            assert int(env_of(container)["LIKENESS_GRPC_PORT"]["value"]) == ports["grpc"]
            service = kind.removesuffix("-serve")
            assert container["command"] == ["python", "-m", service]
            assert container["args"] == ["serve"]


def test_pods_roll_when_the_configuration_changes(chart: helm.Chart) -> None:
    def checksums(values: dict[str, Any]) -> set[str]:
        deployments = render(chart, values).of_kind("Deployment")
        return {doc["spec"]["template"]["metadata"]["annotations"]["checksum/config"] for doc in deployments}

    before, after = checksums({}), checksums({"config": {"logLevel": "DEBUG"}})
    assert len(before) == len(after) == 1
    assert before != after


# --- labels -----------------------------------------------------------------------------------------------

STANDARD_LABELS = {
    "app.kubernetes.io/name": "likeness",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/part-of": "likeness",
    "app.kubernetes.io/managed-by": "Helm",
}


def test_labels_are_consistent(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    chart_label = rendered.docs[0]["metadata"]["labels"]["helm.sh/chart"]
    assert re.fullmatch(r"likeness-\d+\.\d+\.\d+.*", chart_label)
    for doc in rendered.docs + rendered.hooks:
        labels = doc["metadata"]["labels"]
        assert labels.items() >= STANDARD_LABELS.items(), doc["metadata"]["name"]
        assert labels["helm.sh/chart"] == chart_label
        assert labels["app.kubernetes.io/version"]
        if name == "restricted-callers":
            assert labels["team"] == "likeness"
    for doc in rendered.of_kind("Deployment"):
        selector = doc["spec"]["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/component"] == component(doc)
        assert matches(selector, doc["spec"]["template"]["metadata"]["labels"])
        assert doc["spec"]["template"]["metadata"]["labels"] == doc["metadata"]["labels"]
    pods = {
        component(doc): doc["spec"]["template"]["metadata"]["labels"]
        for doc in rendered.of_kind("Deployment")
    }
    for budget in rendered.of_kind("PodDisruptionBudget"):
        selected = [
            kind
            for kind, labels in pods.items()
            if matches(budget["spec"]["selector"]["matchLabels"], labels)
        ]
        assert selected == [component(budget)]
        assert budget["spec"]["maxUnavailable"] == 1


# --- images -----------------------------------------------------------------------------------------------


def test_images_follow_the_values(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    images = {
        component(doc): pod_spec(doc)["containers"][0]["image"] for doc in rendered.of_kind("Deployment")
    }
    if name == "custom-images-no-networkpolicy":
        assert images["gateway"] == "ghcr.io/acme/custom/gateway:9.9.9"
        assert images["ingest"] == f"ghcr.io/acme/custom/ingest@{DIGEST}"
        assert images["retention"] == "ghcr.io/acme/likeness/retention:1.2.3"
        assert images["trainer-serve"] == images["trainer-work"] == "ghcr.io/acme/likeness/trainer:1.2.3"
        for doc in rendered.of_kind("Deployment") + rendered.hooks:
            assert pod_spec(doc)["imagePullSecrets"] == [{"name": "acme-pull"}]
            assert pod_spec(doc)["containers"][0]["imagePullPolicy"] == "Always"
    else:
        for kind, image in images.items():
            assert image == f"registry.example.com/likeness/{kind.split('-')[0]}:0.1.0"


# --- network policies -------------------------------------------------------------------------------------


def ingress_ports(policy: Manifest) -> dict[str, list[Manifest] | None]:
    """Port name -> the peers admitted to it (None: from anywhere)."""
    admitted: dict[str, list[Manifest] | None] = {}
    for rule in policy["spec"]["ingress"]:
        for port in rule["ports"]:
            admitted[port["port"]] = rule.get("from")
    return admitted


def test_network_policies_admit_only_the_callers(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    policies = rendered.of_kind("NetworkPolicy")
    if name == "custom-images-no-networkpolicy":
        assert not policies
        return
    gateway_pods = rendered.deployment("gateway")["spec"]["template"]["metadata"]["labels"]
    by_component: dict[str, Manifest] = {}
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        labels = policy["spec"]["podSelector"]["matchLabels"]
        if "app.kubernetes.io/component" not in labels:
            assert policy["spec"].get("ingress") is None, "the default policy denies everything"
            assert labels == {"app.kubernetes.io/name": "likeness", "app.kubernetes.io/instance": RELEASE}
            continue
        by_component[labels["app.kubernetes.io/component"]] = policy
    assert set(by_component) == {component(doc) for doc in rendered.of_kind("Deployment")}
    metrics_from = None if name == "restricted-callers" else [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]  # fmt: skip
    for kind, policy in by_component.items():
        admitted = ingress_ports(policy)
        assert admitted.pop("metrics") == metrics_from
        if kind == "gateway":
            peers = admitted.pop("http")
            if name == "restricted-callers":
                assert peers is not None
                assert peers[0]["namespaceSelector"]["matchLabels"] == {
                    "kubernetes.io/metadata.name": "ingress"
                }
                assert peers[1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway-test"
            else:
                assert peers is None
        elif kind not in WORKERS:
            peers = admitted.pop("grpc")
            assert peers is not None
            assert matches(peers[0]["podSelector"]["matchLabels"], gateway_pods)
            extra = 1 if (name, kind) == ("restricted-callers", "retention") else 0
            assert len(peers) == 1 + extra
        assert admitted == {}, f"{kind} admits more than its callers: {admitted}"


# --- helm test ----------------------------------------------------------------------------------------------


def test_helm_test_pod_checks_gateway_readiness(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    (pod,) = rendered.hooks
    assert pod["kind"] == "Pod"
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway-test"
    container = pod["spec"]["containers"][0]
    assert container["command"][-1] == f"http://{PREFIX}-gateway:8080/readyz"
    gateway = pod_spec(rendered.deployment("gateway"))["containers"][0]
    assert container["image"] == gateway["image"]


def test_helm_test_pod_can_be_turned_off(chart: helm.Chart) -> None:
    assert not render(chart, {"tests": {"enabled": False}}).hooks


def test_an_external_gateway_service_publishes_no_metrics(chart: helm.Chart) -> None:
    values = {"gateway": {"service": {"type": "LoadBalancer", "port": 443, "annotations": {"a": "b"}}}}
    service = render(chart, values).by_name("Service")[f"{PREFIX}-gateway"]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 443, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["metadata"]["annotations"] == {"a": "b"}


def test_names_follow_overrides(chart: helm.Chart) -> None:
    rendered = render(chart, {"fullnameOverride": "lk"})
    assert "lk-trainer-work" in rendered.by_name("Deployment")
    env = env_of(pod_spec(rendered.by_name("Deployment")["lk-gateway"])["containers"][0])
    assert env["LIKENESS_INGEST_ADDR"]["value"] == "lk-ingest:50051"
