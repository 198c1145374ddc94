"""Render the likeness chart under several value combinations and check what Kubernetes would receive.

The scenarios and their renders (made once per session) come from conftest.py.
"""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import pytest

from gateway.config import GatewaySettings
from ingest.config import IngestSettings
from likeness.job_metrics import BACKLOG, RENDER, TRAIN
from likeness.quota_policy import Limits, QuotaSettings

RELEASE = "demo"
PREFIX = f"{RELEASE}-likeness"

SERVICES = ("gateway", "ingest", "retention", "trainer", "renderer")
API_WORKLOADS = ("gateway", "ingest", "retention", "trainer-serve", "renderer-serve")
WORKERS = ("trainer-work", "renderer-work")
DIGEST = "sha256:" + "ab" * 32
VAULT_USERS = ("ingest", "retention", "trainer", "renderer")  # every service but the gateway

Manifest = dict[str, Any]
Rendered = Any  # conftest.Rendered: docs, hooks, of_kind(), by_name(), deployment()
Scenario = tuple[str, Rendered]


def component(doc: Manifest) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def pod_spec(doc: Manifest) -> Manifest:
    spec: Manifest = doc["spec"]["template"]["spec"] if doc["kind"] in ("Deployment", "Job") else doc["spec"]
    return spec


def identity(kind: str) -> str:
    """The identity of a workload: trainer-serve is `trainer`, trainer-work `trainer-worker`."""
    service, _, role = kind.partition("-")
    return f"{service}-worker" if role == "work" else service


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- what is rendered -------------------------------------------------------------------------------------


def test_renders_one_deployment_per_workload(scenario: Scenario) -> None:
    name, rendered = scenario
    expected = set(API_WORKLOADS) | (set() if name == "workers-disabled" else set(WORKERS))
    assert {component(doc) for doc in rendered.of_kind("Deployment")} == expected
    assert len(rendered.of_kind("PodDisruptionBudget")) == len(expected)


def test_resource_names_are_unique_per_kind(scenario: Scenario) -> None:
    _, rendered = scenario
    seen = [(doc["kind"], doc["metadata"]["name"]) for doc in rendered.docs]
    assert len(seen) == len(set(seen))


def test_services_front_the_apis_only(scenario: Scenario) -> None:
    name, rendered = scenario
    services = rendered.by_name("Service")
    external = name == "custom-images-no-networkpolicy"  # a LoadBalancer gateway
    assert set(services) == {f"{PREFIX}-{service}" for service in SERVICES} | (
        {f"{PREFIX}-gateway-metrics"} if external else set()
    )
    pods = [doc["spec"]["template"]["metadata"]["labels"] for doc in rendered.of_kind("Deployment")]
    for service in services.values():
        selected = [labels for labels in pods if matches(service["spec"]["selector"], labels)]
        assert len(selected) == 1, service["metadata"]["name"]
        assert selected[0]["app.kubernetes.io/component"] in API_WORKLOADS
        published = external and service["metadata"]["name"] == f"{PREFIX}-gateway"
        assert service["spec"]["type"] == ("LoadBalancer" if published else "ClusterIP")


def test_gateway_reaches_every_grpc_service_by_its_service_name(scenario: Scenario) -> None:
    _, rendered = scenario
    services = rendered.by_name("Service")
    env = env_of(pod_spec(rendered.deployment("gateway"))["containers"][0])
    for service in ("retention", "ingest", "trainer", "renderer"):
        host, port = env[f"LIKENESS_{service.upper()}_ADDR"]["value"].split(":")
        grpc_ports = [p["port"] for p in services[host]["spec"]["ports"] if p["name"] == "grpc"]
        assert grpc_ports == [int(port)]


# --- pod security -----------------------------------------------------------------------------------------


def test_every_pod_runs_restricted(scenario: Scenario) -> None:
    _, rendered = scenario
    pods = rendered.pods  # the Deployments, the bootstrap Job, the helm test pod
    assert {doc["kind"] for doc in pods} == {"Deployment", "Job", "Pod"}
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


def test_nothing_is_written_to_disk(scenario: Scenario) -> None:
    """The only writable volume is the GPU workers' memory-backed /tmp; nothing mounts a host path."""
    _, rendered = scenario
    for doc in rendered.of_kind("Deployment") + rendered.of_kind("Job"):
        spec = pod_spec(doc)
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        for volume in volumes.values():
            assert set(volume) - {"name"} <= {
                "emptyDir",
                "persistentVolumeClaim",
                "projected",
                "secret",
                "configMap",
            }
            if "emptyDir" in volume:
                assert volume["emptyDir"]["medium"] == "Memory"
                assert volume["emptyDir"]["sizeLimit"]
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["readOnly"] is True
        for mount in spec["containers"][0].get("volumeMounts", []):
            volume = volumes[mount["name"]]
            assert mount.get("readOnly", False) or "emptyDir" in volume, mount
        scratch = [m for m in spec["containers"][0].get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        assert len(scratch) == (1 if component(doc) in WORKERS else 0)


def test_only_a_vault_token_is_projected(scenario: Scenario) -> None:
    """No pod holds a Kubernetes API token; those using Vault get a short-lived Vault-audience token only,
    each with a ServiceAccount and a Vault role of its own identity (a GPU worker's are not its API's).

    (The other projected volume, a process's secret files, is test_chart_secrets.py's.)"""
    name, rendered = scenario
    accounts = rendered.by_name("ServiceAccount")
    running = [component(doc) for doc in rendered.of_kind("Deployment")] + ["bootstrap"]
    assert set(accounts) == {f"{PREFIX}-{identity(kind)}" for kind in running}
    assert all(account["automountServiceAccountToken"] is False for account in accounts.values())
    for doc in rendered.of_kind("Deployment") + rendered.of_kind("Job"):
        spec = pod_spec(doc)
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == f"{PREFIX}-{identity(component(doc))}"
        service = component(doc).split("-")[0]
        tokens = [
            volume
            for volume in spec.get("volumes", [])
            if any(
                "serviceAccountToken" in source for source in volume.get("projected", {}).get("sources", [])
            )
        ]
        env = env_of(spec["containers"][0])
        if service not in VAULT_USERS:
            assert tokens == [], (
                "the gateway and the bootstrap Job talk to neither Vault nor the Kubernetes API"
            )
            assert "LIKENESS_VAULT_ROLE" not in env
            continue
        (token,) = tokens
        (source,) = token["projected"]["sources"]
        assert set(source) == {"serviceAccountToken"}
        assert source["serviceAccountToken"].get("audience") == (
            None if name == "restricted-callers" else "vault"
        )
        assert source["serviceAccountToken"]["expirationSeconds"] <= 3600
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts[token["name"]]["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount"
        assert mounts[token["name"]]["readOnly"] is True
        assert env["LIKENESS_VAULT_ROLE"]["value"] == f"likeness-{identity(component(doc))}"


# --- resources and probes ---------------------------------------------------------------------------------


def test_every_container_has_resources(scenario: Scenario) -> None:
    _, rendered = scenario
    for doc in rendered.pods:
        for container in pod_spec(doc)["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), doc["metadata"]["name"]
            assert "memory" in resources["limits"], doc["metadata"]["name"]


def test_every_deployment_container_has_probes(scenario: Scenario) -> None:
    _, rendered = scenario
    for doc in rendered.of_kind("Deployment"):
        container = pod_spec(doc)["containers"][0]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        kind = component(doc)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert probe in container, (kind, probe)
        if kind == "gateway":
            assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        elif kind in WORKERS:
            for probe in ("startupProbe", "readinessProbe"):
                assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        else:  # the plaintext health port: the kubelet has no client certificate for the API port
            assert ports["health"] == int(env_of(container)["LIKENESS_HEALTH_PORT"]["value"]) == 50050
            assert ports["health"] != ports["grpc"]
            for probe in ("startupProbe", "readinessProbe"):
                assert container[probe]["grpc"] == {"port": ports["health"]}, (kind, probe)
        # Dependency health gates readiness only: liveness just asks whether the process answers, on the
        # metrics port every process (the gateway included) serves.
        assert container["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}, kind
        assert "metrics" in ports, kind


def test_every_service_starts_as_python_m_service_role(scenario: Scenario) -> None:
    # The one entry-point convention, also the images' (ENTRYPOINT and CMD) and the dev stack's.
    _, rendered = scenario
    for doc in rendered.of_kind("Deployment"):
        kind = component(doc)
        service, _, role = kind.partition("-")
        container = pod_spec(doc)["containers"][0]
        assert container["command"] == ["python", "-m", service], kind
        assert container["args"] == [role or "serve"], kind


def test_workers_get_a_gpu_and_the_base_model(
    scenario: Scenario, scenario_values: dict[str, dict[str, Any]]
) -> None:
    name, rendered = scenario
    values = scenario_values[name]
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
            env = env_of(container)
            assert env["LIKENESS_BASE_MODEL"]["value"] == "/models/base"
            # The manifest's own digest, from the values (outside the weights' volume), when pinned there.
            pinned = env.get("LIKENESS_BASE_MODEL_MANIFEST_SHA256", {}).get("value")
            assert pinned == values.get("baseModel", {}).get("manifestSha256")
            if kind == "renderer-work":
                pinned = env.get("LIKENESS_SAFETY_MODEL_MANIFEST_SHA256", {}).get("value")
                assert pinned == values.get("renderer", {}).get("safety", {}).get("manifestSha256")
        if kind == "renderer-work":
            # The safety classifier, pinned like the base model: from the same claim, read-only.
            env = env_of(container)
            assert env["LIKENESS_SAFETY_GATE"]["value"] == "enforce"
            assert env["LIKENESS_SAFETY_MODEL"]["value"] == "/models/safety"
            mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/models/safety")
            assert (mount["name"], mount["subPath"], mount["readOnly"]) == (
                "base-model",
                "safety-classifier",
                True,
            )
        elif kind == "renderer-serve":
            assert env_of(container)["LIKENESS_SAFETY_GATE"]["value"] == "off", (
                "the serve role classifies nothing"
            )
        visible = env_of(container).get("NVIDIA_VISIBLE_DEVICES", {}).get("value")
        assert visible == ("void" if kind in ("trainer-serve", "renderer-serve") else None), kind
    if name == "workers-disabled":
        assert not set(WORKERS) & set(deployments)


# --- configuration and secrets ----------------------------------------------------------------------------

COMMON_ENV = {
    "LIKENESS_ENV", "LIKENESS_LOG_LEVEL", "LIKENESS_METRICS_PORT", "LIKENESS_NATS_URL",
    "LIKENESS_S3_ENDPOINT", "LIKENESS_S3_BUCKET", "LIKENESS_S3_REGION", "LIKENESS_VAULT_ADDR",
    "LIKENESS_VAULT_AUTH", "LIKENESS_VAULT_TRANSIT_MOUNT", "LIKENESS_SECRETS_DIR",
}  # fmt: skip
STORAGE_ENV = {"LIKENESS_VAULT_ROLE"}


def test_production_settings_the_services_require_are_all_set(renders: dict[str, Rendered]) -> None:
    """What each settings class refuses to start without in production (config.py of each service)."""
    rendered = renders["production"]
    # Every process verifies end users' tokens against the identity provider's keys (a file here).
    for doc in rendered.of_kind("Deployment"):
        spec = pod_spec(doc)
        env = env_of(spec["containers"][0])
        assert env["LIKENESS_JWKS_FILE"]["value"] == "/etc/likeness/jwks/jwks.json"
        assert "LIKENESS_JWKS_URL" not in env
        assert env["LIKENESS_JWT_ISSUER"]["value"] == "https://idp.acme.internal/"
        (jwks,) = [v for v in spec["volumes"] if v["name"] == "jwks"]
        assert jwks["secret"]["secretName"] == "acme-jwks"
    retention = env_of(pod_spec(rendered.deployment("retention"))["containers"][0])
    assert retention["LIKENESS_RECEIPT_PREVIOUS_PUBLIC_KEYS"]["value"] == '["' + "A" * 43 + '="]'
    # Only the GPU workers mark outputs: the serve role signs nothing, so it holds no C2PA key.
    for role, signs in (("serve", "false"), ("work", "true")):
        renderer = env_of(pod_spec(rendered.deployment(f"renderer-{role}"))["containers"][0])
        assert renderer["LIKENESS_C2PA_SIGN"]["value"] == signs
    for doc in rendered.of_kind("Deployment"):
        spec = pod_spec(doc)
        env = env_of(spec["containers"][0])
        assert (
            env["SSL_CERT_FILE"]["value"]
            == env["REQUESTS_CA_BUNDLE"]["value"]
            == env["OTEL_EXPORTER_OTLP_CERTIFICATE"]["value"]  # gRPC's TLS (OTLP) ignores SSL_CERT_FILE
            == "/etc/likeness/ca/bundle.pem"
        )
        (ca,) = [v for v in spec["volumes"] if v["name"] == "ca-bundle"]
        assert ca["configMap"]["name"] == "acme-ca"
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["ca-bundle"] == {"name": "ca-bundle", "mountPath": "/etc/likeness/ca", "readOnly": True}


# Values a platform team tunes, and the GatewaySettings field each becomes (large numbers check that Helm's
# float64 values are written as integers, not "1e+06").
GATEWAY_TUNING = {
    "rateLimit": {
        "sync": False,
        "syncSeconds": 0.25,
        "perSecond": 12.5,
        "burst": 40,
        "tenantPerSecond": 30.5,
        "tenantBurst": 90,
        "uploadPerSecond": 0.5,
        "uploadBurst": 3,
        "tenantUploadPerSecond": 1.5,
        "tenantUploadBurst": 7,
        "tenants": 2_000_000,
        "callers": 3_000_000,
    },
    "edge": {
        "maxJsonBodyBytes": 2_000_000,
        "maxConcurrentRequests": 300,
        "maxEventStreamsPerCaller": 3,
        "maxExportsPerCaller": 1,
        "headerTimeoutSeconds": 7.5,
        "keepAliveTimeoutSeconds": 9,
        "streamTimeoutSeconds": 90,
    },
    "requestTimeoutSeconds": 45,
    "subjectStatusCacheSeconds": 0,
    "idempotency": {"ttlSeconds": 1_000_000},
}
GATEWAY_TUNED_FIELDS = {
    "rate_limit_sync": False,
    "rate_limit_sync_seconds": 0.25,
    "rate_limit_per_second": 12.5,
    "rate_limit_burst": 40,
    "tenant_rate_limit_per_second": 30.5,
    "tenant_rate_limit_burst": 90,
    "upload_rate_limit_per_second": 0.5,
    "upload_rate_limit_burst": 3,
    "tenant_upload_rate_limit_per_second": 1.5,
    "tenant_upload_rate_limit_burst": 7,
    "rate_limit_tenants": 2_000_000,
    "rate_limit_callers": 3_000_000,
    "max_json_body_bytes": 2_000_000,
    "max_concurrent_requests": 300,
    "max_event_streams_per_caller": 3,
    "max_exports_per_caller": 1,
    "header_timeout_seconds": 7.5,
    "keep_alive_timeout_seconds": 9,
    "stream_timeout_seconds": 90.0,
    "request_timeout_seconds": 45.0,
    "subject_status_cache_seconds": 0.0,
    "idempotency_ttl_seconds": 1_000_000,
}


def test_gateway_tuning_reaches_its_settings(render: Any, process_settings: Any) -> None:
    settings = process_settings(render({"gateway": GATEWAY_TUNING}), "gateway")
    assert isinstance(settings, GatewaySettings)
    assert settings.is_production
    assert {field: getattr(settings, field) for field in GATEWAY_TUNED_FIELDS} == GATEWAY_TUNED_FIELDS
    assert settings.metrics_port == 9464
    assert settings.nats_url == "tls://nats.nats.svc.cluster.local:4222"


def test_gateway_defaults_match_the_code(renders: dict[str, Rendered], process_settings: Any) -> None:
    settings = process_settings(renders["defaults"], "gateway")
    for field in GATEWAY_TUNED_FIELDS:
        assert getattr(settings, field) == GatewaySettings.model_fields[field].default, field


@pytest.mark.parametrize(
    ("values", "seconds"),
    [
        ({}, IngestSettings.model_fields["upload_receive_seconds"].default),
        ({"uploadReceiveSeconds": 33}, 33.0),
    ],
    ids=["default", "tuned"],
)
def test_ingest_receive_deadline_reaches_its_settings(
    render: Any, process_settings: Any, values: dict[str, Any], seconds: float
) -> None:
    settings = process_settings(render({"ingest": values}), "ingest")
    assert isinstance(settings, IngestSettings)
    assert settings.upload_receive_seconds == seconds


QUOTA_TUNING = {
    "concurrentTrainings": 2,
    "concurrentRenders": 5,
    "gpuSecondsPerDay": 3600,
    "trainingSteps": 1200,
    "perTenant": {"acme": {"concurrent_renders": 64, "gpu_seconds_per_day": 86400}},
}


@pytest.mark.parametrize("component", ["trainer-serve", "renderer-serve"])
def test_quotas_reach_both_serve_roles(render: Any, process_settings: Any, component: str) -> None:
    settings = process_settings(render({"quotas": QUOTA_TUNING}), component)
    assert isinstance(settings, QuotaSettings)
    assert settings.limits("globex") == Limits(
        concurrent_trainings=2, concurrent_renders=5, gpu_seconds_per_day=3600.0, training_steps=1200
    )
    assert settings.limits("acme") == Limits(
        concurrent_trainings=2, concurrent_renders=64, gpu_seconds_per_day=86400.0, training_steps=1200
    )


@pytest.mark.parametrize("component", ["trainer-serve", "renderer-serve"])
def test_quota_defaults_match_the_code(
    renders: dict[str, Rendered], process_settings: Any, component: str
) -> None:
    settings = process_settings(renders["defaults"], component)
    assert isinstance(settings, QuotaSettings)
    assert settings.limits("globex") == QuotaSettings().limits("globex")
    assert settings.quotas == {}


def test_only_the_serve_roles_get_quotas(scenario: Scenario) -> None:
    """Quotas are checked where a job is accepted; the GPU workers never refuse work by quota (the serve
    role accepted it), and no other service has any: only the two serve roles are given them."""
    _, rendered = scenario
    given = {
        deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        for deployment in rendered.of_kind("Deployment")
        if any(
            name.startswith("LIKENESS_QUOTA")
            for name in env_of(deployment["spec"]["template"]["spec"]["containers"][0])
        )
    }
    assert given == {"trainer-serve", "renderer-serve"}


def test_every_process_gets_the_shared_configuration(scenario: Scenario) -> None:
    name, rendered = scenario
    config_maps = rendered.by_name("ConfigMap")
    for doc in rendered.of_kind("Deployment"):
        container = pod_spec(doc)["containers"][0]
        (source,) = container["envFrom"]
        data = config_maps[source["configMapRef"]["name"]]["data"]
        names = set(data) | set(env_of(container))
        kind = component(doc)
        expected = COMMON_ENV | (set() if kind == "gateway" else STORAGE_ENV)
        assert names >= expected, expected - names
        # Every process verifies end users' tokens (the gateway, then the service holding the data).
        assert {"LIKENESS_JWT_ISSUER", "LIKENESS_JWT_AUDIENCE"} <= names
        assert len({"LIKENESS_JWKS_URL", "LIKENESS_JWKS_FILE"} & names) == 1
        if kind == "gateway":
            assert not names & STORAGE_ENV, "the gateway holds no storage rights"
        assert data["LIKENESS_ENV"] == "production"
        assert data["LIKENESS_VAULT_AUTH"] == "kubernetes"
        assert data["LIKENESS_NATS_URL"].startswith("tls://")
        assert "@" not in data["LIKENESS_NATS_URL"], "credentials never go into the ConfigMap"
        assert data["LIKENESS_S3_ENDPOINT"].startswith("https://")
        assert data["LIKENESS_VAULT_ADDR"].startswith("https://")
        assert ("LIKENESS_OTLP_ENDPOINT" in data) == (name in ("restricted-callers", "production"))
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports["metrics"] == int(data["LIKENESS_METRICS_PORT"])
        if kind == "gateway":
            assert set(ports) == {"http", "metrics"}, "the gateway serves /metrics off its API port"
            assert int(env_of(container)["LIKENESS_HTTP_PORT"]["value"]) == ports["http"]
            assert container["command"] == ["python", "-m", "gateway"]
            continue
        if kind in WORKERS:
            assert "LIKENESS_GRPC_PORT" not in names
        else:
            assert int(env_of(container)["LIKENESS_GRPC_PORT"]["value"]) == ports["grpc"]
            service = kind.removesuffix("-serve")
            assert container["command"] == ["python", "-m", service]
            assert container["args"] == ["serve"]


def test_pods_roll_when_the_configuration_changes(render: Any) -> None:
    def checksums(values: dict[str, Any]) -> set[str]:
        deployments = render(values).of_kind("Deployment")
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


def test_labels_are_consistent(scenario: Scenario) -> None:
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


def test_images_follow_the_values(scenario: Scenario) -> None:
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
    elif name == "production":
        for kind, image in images.items():
            repository, digest = image.split("@")
            assert repository == f"registry.acme.internal/likeness/{kind.split('-')[0]}"
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
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


def egress_targets(policy: Manifest) -> list[tuple[tuple[tuple[int, str], ...], list[Manifest] | None]]:
    """Each egress rule as (its (port, protocol) pairs, its peers or None for anywhere)."""
    return [
        (tuple((port["port"], port["protocol"]) for port in rule["ports"]), rule.get("to"))
        for rule in policy["spec"]["egress"]
    ]


def policies_by_component(rendered: Rendered) -> dict[str, Manifest]:
    found: dict[str, Manifest] = {}
    for policy in rendered.of_kind("NetworkPolicy"):
        labels = policy["spec"]["podSelector"]["matchLabels"]
        if "app.kubernetes.io/component" in labels:
            found[labels["app.kubernetes.io/component"]] = policy
    return found


def test_network_policies_deny_by_default(scenario: Scenario) -> None:
    name, rendered = scenario
    policies = rendered.of_kind("NetworkPolicy")
    if name == "custom-images-no-networkpolicy":
        assert not policies
        return
    (default,) = [
        p for p in policies if "app.kubernetes.io/component" not in p["spec"]["podSelector"]["matchLabels"]
    ]
    assert default["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "likeness",
        "app.kubernetes.io/instance": RELEASE,
    }
    assert default["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in default["spec"]
    assert "egress" not in default["spec"]
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    expected = {component(doc) for doc in rendered.of_kind("Deployment")} | {"gateway-test", "bootstrap"}
    assert set(policies_by_component(rendered)) == expected


def test_network_policies_admit_only_the_callers(scenario: Scenario) -> None:
    name, rendered = scenario
    if name == "custom-images-no-networkpolicy":
        return
    gateway_pods = rendered.deployment("gateway")["spec"]["template"]["metadata"]["labels"]
    metrics_from = None if name == "restricted-callers" else [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]  # fmt: skip
    for kind, policy in policies_by_component(rendered).items():
        admitted = ingress_ports(policy) if "ingress" in policy["spec"] else {}
        if kind in ("gateway-test", "bootstrap"):
            assert admitted == {}, f"{kind} accepts no connection"
            continue
        assert admitted.pop("metrics") == metrics_from, kind
        if kind == "gateway":
            peers = admitted.pop("http")
            if name == "restricted-callers":
                assert peers is not None
                assert peers[0]["namespaceSelector"]["matchLabels"] == {
                    "kubernetes.io/metadata.name": "ingress"
                }
                assert peers[1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway-test"
                assert len(peers) == 2, "scrapers reach the metrics port, not the API"
            else:
                assert peers is None
            assert admitted == {}, f"the gateway admits more than its callers: {admitted}"
            continue
        if kind not in WORKERS:  # nobody calls a GPU worker
            peers = admitted.pop("grpc")
            assert peers is not None
            assert matches(peers[0]["podSelector"]["matchLabels"], gateway_pods)
            extra = 1 if (name, kind) == ("restricted-callers", "retention") else 0
            assert len(peers) == 1 + extra
        # Nor the plaintext health port: no rule at all, so only the pod's own node (the kubelet) reaches it.
        assert admitted == {}, f"{kind} admits more than its callers: {admitted}"


DNS = ((53, "UDP"), (53, "TCP"))
KUBE_DNS = [
    {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
]


def test_network_policies_let_each_pod_reach_only_what_it_talks_to(scenario: Scenario) -> None:
    name, rendered = scenario
    if name == "custom-images-no-networkpolicy":
        return
    production = name == "production"
    namespace = lambda ns: [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}]  # noqa: E731
    # Ports come from the URLs: nats.url :4222, s3.endpoint https (443, or the CIDR-pinned :9000 in
    # production), vault.addr :8200, the JWKS URL https, the OTLP endpoint :4317.
    nats = (((4222, "TCP"),), namespace("nats"))
    storage = [((9000 if production else 443, "TCP"),), ((8200, "TCP"),)]
    storage_peers = [[{"ipBlock": {"cidr": "10.20.0.0/16"}}] if production else None, namespace("vault")]
    otlp = {
        "production": [(((4317, "TCP"),), namespace("observability"))],
        "restricted-callers": [(((4317, "TCP"),), None)],
    }.get(name, [])
    grpc_port = {"retention": 50051, "ingest": 50051, "trainer": 50051, "renderer": 50051}
    jwks: list[Any] = [] if production else [(((443, "TCP"),), None)]
    for kind, policy in policies_by_component(rendered).items():
        rules = egress_targets(policy)
        assert rules[0] == (DNS, KUBE_DNS), kind
        rules = rules[1:]
        if kind == "gateway-test":
            (rule,) = rules
            assert rule[0] == ((8080, "TCP"),)
            assert rule[1] is not None
            assert rule[1][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
            continue
        if kind == "bootstrap":  # provisioning: NATS and S3, nothing else (not Vault, not the services)
            assert rules == [nats, (storage[0], storage_peers[0])]
            continue
        # Everyone talks to NATS, the gateway included (idempotency bucket, erasures, progress events).
        assert rules[0] == nats, kind
        rules = rules[1:]
        if kind == "gateway":
            backends = rules[:4]
            assert [rule[0] for rule in backends] == [((grpc_port[s], "TCP"),) for s in grpc_port]
            selected = [
                rule[1][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for rule in backends
            ]  # type: ignore[index]
            assert selected == ["retention", "ingest", "trainer-serve", "renderer-serve"]
            assert rules[4:] == jwks + otlp
        elif kind in WORKERS:  # they verify no end user's token
            assert rules == list(zip(storage, storage_peers, strict=True)) + otlp, kind
        else:  # every gRPC service verifies end users' tokens again (a JWKS file in production)
            assert rules == list(zip(storage, storage_peers, strict=True)) + jwks + otlp, kind


# --- helm test ----------------------------------------------------------------------------------------------


def test_helm_test_pod_checks_gateway_readiness(scenario: Scenario) -> None:
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


def test_helm_test_pod_can_be_turned_off(render: Any) -> None:
    assert not render({"tests": {"enabled": False}}).hooks


def test_an_external_gateway_service_publishes_no_metrics(render: Any) -> None:
    """A LoadBalancer carries the API only; the gateway's metrics move to a ClusterIP Service (scraped)."""
    values = {"gateway": {"service": {"type": "LoadBalancer", "port": 443, "annotations": {"a": "b"}}}}
    services = render(values).by_name("Service")
    service = services[f"{PREFIX}-gateway"]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 443, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["metadata"]["annotations"] == {"a": "b"}
    metrics = services[f"{PREFIX}-gateway-metrics"]
    assert metrics["spec"]["type"] == "ClusterIP"
    assert "annotations" not in metrics["metadata"]
    assert metrics["spec"]["selector"] == service["spec"]["selector"]
    assert metrics["spec"]["ports"] == [
        {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert metrics["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_every_api_workload_is_scraped_on_its_metrics_port(scenario: Scenario) -> None:
    """The ServiceMonitor's `metrics` endpoint reaches every Service-fronted workload, gateway included."""
    _, rendered = scenario
    pods = {component(doc): pod_spec(doc)["containers"][0] for doc in rendered.of_kind("Deployment")}
    scraped = set()
    for service in rendered.of_kind("Service"):
        ports = [p for p in service["spec"]["ports"] if p["name"] == "metrics"]
        if service["spec"]["type"] != "ClusterIP":
            assert ports == [], "metrics are never published outside the cluster"
            continue
        (port,) = ports
        assert port["targetPort"] == "metrics"
        selected = service["spec"]["selector"]["app.kubernetes.io/component"]
        assert "metrics" in {p["name"] for p in pods[selected]["ports"]}, selected
        scraped.add(selected)
    assert scraped == set(API_WORKLOADS)


def test_names_follow_overrides(render: Any) -> None:
    rendered = render({"fullnameOverride": "lk"})
    assert "lk-trainer-work" in rendered.by_name("Deployment")
    env = env_of(pod_spec(rendered.by_name("Deployment")["lk-gateway"])["containers"][0])
    assert env["LIKENESS_INGEST_ADDR"]["value"] == "lk-ingest:50051"


# --- autoscaling ------------------------------------------------------------------------------------------


def test_autoscalers_own_the_replica_counts(scenario: Scenario) -> None:
    """With an autoscaler the Deployment leaves `replicas` out, so an upgrade never resets what it chose."""
    name, rendered = scenario
    autoscaled = {"gateway", "ingest", *WORKERS} if name == "keda-hpa" else set()
    for doc in rendered.of_kind("Deployment"):
        assert ("replicas" in doc["spec"]) == (component(doc) not in autoscaled), component(doc)
    hpas = {component(doc): doc for doc in rendered.of_kind("HorizontalPodAutoscaler")}
    scaled_objects = {component(doc): doc for doc in rendered.of_kind("ScaledObject")}
    assert set(hpas) == ({"gateway", "ingest"} if name == "keda-hpa" else set())
    assert set(scaled_objects) == (set(WORKERS) if name == "keda-hpa" else set())
    for kind, autoscaler in (hpas | scaled_objects).items():
        target = autoscaler["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        assert target["name"] == rendered.deployment(kind)["metadata"]["name"]


def test_horizontal_pod_autoscalers_follow_the_values(renders: dict[str, Rendered]) -> None:
    hpas = {component(doc): doc["spec"] for doc in renders["keda-hpa"].of_kind("HorizontalPodAutoscaler")}
    gateway, ingest = hpas["gateway"], hpas["ingest"]
    assert (gateway["minReplicas"], gateway["maxReplicas"]) == (2, 10)
    assert [m["resource"]["name"] for m in gateway["metrics"]] == ["cpu", "memory"]
    assert gateway["metrics"][1]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 80}
    assert gateway["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 300}}
    assert (ingest["minReplicas"], ingest["maxReplicas"]) == (3, 12)
    assert ingest["metrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
        }
    ]
    assert "behavior" not in ingest


def test_keda_scales_workers_on_the_whole_backlog_of_their_work_queue(renders: dict[str, Rendered]) -> None:
    """One consumer per tenant: KEDA reads the backlog metric of every tenant's jobs, under the queue label
    the serve role exports it with (`likeness.job_metrics`)."""
    scaled = {component(doc): doc["spec"] for doc in renders["keda-hpa"].of_kind("ScaledObject")}
    queues = {"trainer-work": TRAIN.label, "renderer-work": RENDER.label}
    assert queues == {"trainer-work": "train", "renderer-work": "render"}
    assert BACKLOG._name == "likeness_queue_backlog_messages"
    for kind, spec in scaled.items():
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "prometheus"
        metadata = trigger["metadata"]
        assert all(isinstance(value, str) for value in metadata.values()), "KEDA trigger metadata are strings"
        namespace = renders["keda-hpa"].deployment(kind)["metadata"]["namespace"]
        assert metadata["query"] == (
            f'max(likeness_queue_backlog_messages{{queue="{queues[kind]}",namespace="{namespace}"}})'
        )
        assert metadata["serverAddress"] == "http://prometheus.monitoring:9090"
    assert scaled["trainer-work"]["minReplicaCount"] == 0, "idle GPUs are released"
    assert (
        scaled["trainer-work"]["maxReplicaCount"],
        scaled["trainer-work"]["triggers"][0]["metadata"]["threshold"],
    ) == (4, "1")
    assert scaled["renderer-work"]["minReplicaCount"] == 1
    assert scaled["renderer-work"]["maxReplicaCount"] == 6
    assert scaled["renderer-work"]["triggers"][0]["metadata"]["threshold"] == "2"


def test_keda_without_workers_renders_no_scaled_object(render: Any) -> None:
    values = {"keda": {"enabled": True}, "trainer": {"work": {"enabled": False}}}
    rendered = render(values)
    assert [component(doc) for doc in rendered.of_kind("ScaledObject")] == ["renderer-work"]


INVERTED_HPA = {"gateway": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}
INVERTED_KEDA = {
    "keda": {"enabled": True},
    "trainer": {"work": {"autoscaling": {"minReplicaCount": 3, "maxReplicaCount": 1}}},
}


@pytest.mark.parametrize(
    ("values", "message"), [(INVERTED_HPA, "minReplicas"), (INVERTED_KEDA, "minReplicaCount")]
)
def test_autoscaler_bounds_must_be_ordered(render: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(values)


def test_egress_ports_follow_the_urls(render: Any) -> None:
    values = {
        "nats": {"url": "tls://nats.example:7422"},
        "s3": {"endpoint": "https://s3.example"},
        "vault": {"addr": "https://vault.example"},
        "auth": {"jwksUrl": "https://idp.example:8443/jwks.json"},
        "networkPolicy": {"egress": {"vault": {"to": [], "ports": [8200, 8201]}}},
    }
    policy = render(values).by_name("NetworkPolicy")[f"{PREFIX}-ingest"]
    assert [rule[0] for rule in egress_targets(policy)] == [
        DNS, ((7422, "TCP"),), ((443, "TCP"),), ((8200, "TCP"), (8201, "TCP")), ((8443, "TCP"),)
    ]  # fmt: skip


def test_the_health_port_admits_only_the_peers_named_for_probes(render: Any) -> None:
    """networkPolicy.probesFrom (for a CNI that filters node traffic) opens the health port, and only it."""
    nodes = [{"ipBlock": {"cidr": "10.0.0.0/16"}}]
    policies = policies_by_component(render({"networkPolicy": {"probesFrom": nodes}}))
    for kind in ("retention", "ingest", "trainer-serve", "renderer-serve"):
        admitted = ingress_ports(policies[kind])
        assert admitted["health"] == nodes, kind
        assert admitted["grpc"] != nodes, kind
    for kind in ("gateway", *WORKERS):  # no health port there
        assert "health" not in ingress_ports(policies[kind]), kind


def test_the_identity_adapter_reaches_the_renderer_when_enabled(render: Any, process_settings: Any) -> None:
    """Instant mode: both roles know the adapter is there; only the GPU workers mount, pin and weigh it."""
    digest = "ab" * 32
    values = {"identityAdapter": {"enabled": True, "manifestSha256": digest, "scale": 0.6}}
    rendered = render({"renderer": values})
    work = process_settings(rendered, "renderer-work")
    assert (str(work.identity_adapter), work.identity_adapter_manifest_sha256) == (
        "/models/identity-adapter",
        digest,
    )
    assert work.identity_adapter_scale == 0.6
    container = rendered.workload("renderer-work")["spec"]["template"]["spec"]["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/models/identity-adapter")
    assert (mount["name"], mount["subPath"], mount["readOnly"]) == ("base-model", "identity-adapter", True)
    serve = rendered.workload("renderer-serve")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(serve)["LIKENESS_IDENTITY_ADAPTER"]["value"] == "/models/identity-adapter"
    assert "LIKENESS_IDENTITY_ADAPTER_MANIFEST_SHA256" not in env_of(serve)
    # Off by default: no variable, no mount.
    default = render({}).workload("renderer-work")["spec"]["template"]["spec"]["containers"][0]
    assert "LIKENESS_IDENTITY_ADAPTER" not in env_of(default)
