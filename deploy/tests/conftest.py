"""Shared by the chart tests: the value combinations ("scenarios") and their renders, made once per session.

Rendering uses helm-python-sdk (Helm's own Go engine through a C library), so no helm binary, cluster or
network is needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from gateway.config import GatewaySettings
from ingest.config import IngestSettings
from likeness.config import SECRETS_DIR_VARIABLE, CommonSettings
from likeness_cli.bootstrap_commands import BootstrapSettings
from renderer.config import RendererSettings
from retention.config import RetentionSettings
from trainer.config import TrainerSettings

CHART_DIR = Path(__file__).resolve().parents[1] / "helm" / "likeness"
RELEASE = "demo"
NAMESPACE = "likeness"
DIGEST = "sha256:" + "ab" * 32
#: One per process kind (issue 14): each has a NATS user, and all but the gateway an S3 identity, of its own;
#: `bootstrap` is the provisioning Job's.
IDENTITIES = (
    "gateway", "retention", "ingest", "trainer", "trainer-worker", "renderer", "renderer-worker", "bootstrap"
)  # fmt: skip
#: The identities with a gRPC hop, so a certificate: the gateway calls, the others serve.
GRPC_IDENTITIES = ("gateway", "retention", "ingest", "trainer", "renderer")
#: The settings class each service's processes read (both roles of trainer and renderer share theirs), and
#: the bootstrap Job's (`likeness bootstrap`).
SETTINGS: dict[str, type[CommonSettings]] = {
    "bootstrap": BootstrapSettings,
    "gateway": GatewaySettings,
    "retention": RetentionSettings,
    "ingest": IngestSettings,
    "trainer": TrainerSettings,
    "renderer": RendererSettings,
}

#: Digests of the weights' manifests in the production scenario (`likeness model manifest` prints them).
BASE_MODEL_MANIFEST_SHA256 = "b" * 64
SAFETY_MANIFEST_SHA256 = "c" * 64

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "workers-disabled": {"trainer": {"work": {"enabled": False}}, "renderer": {"work": {"enabled": False}}},
    "custom-images-no-networkpolicy": {
        "networkPolicy": {"enabled": False},
        "image": {"registry": "ghcr.io/acme/", "tag": "1.2.3", "pullPolicy": "Always"},
        # Published directly: the gateway's metrics port moves to its own ClusterIP Service.
        "gateway": {
            "image": {"repository": "custom/gateway", "tag": "9.9.9"},
            "service": {"type": "LoadBalancer"},
        },
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
    "keda-hpa": {
        "keda": {"enabled": True, "prometheusServerAddress": "http://prometheus.monitoring:9090"},
        "gateway": {
            "autoscaling": {
                "enabled": True,
                "targetMemoryUtilizationPercentage": 80,
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
            }
        },
        "ingest": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12}},
        "renderer": {
            "work": {"autoscaling": {"minReplicaCount": 1, "maxReplicaCount": 6, "lagThreshold": 2}}
        },
    },
    # What a platform team would run: pinned digests, every credential from its own Secret (a NATS user and
    # an S3 identity per process, each named after its identity as the shipped NATS allow-lists expect), a
    # private CA, certificates from cert-manager, egress pinned to CIDRs, traces exported.
    "production": {
        "image": {
            "registry": "registry.acme.internal/likeness",
            "pullPolicy": "IfNotPresent",
            "requireDigests": True,
        },
        "imagePullSecrets": [{"name": "acme-pull"}],
        "config": {"otlpEndpoint": "https://otel-collector.observability:4317", "logLevel": "WARNING"},
        "tls": {
            "caBundle": {"existingConfigMap": "acme-ca", "key": "bundle.pem"},
            "certManager": {
                "enabled": True,
                "issuerRef": {"name": "acme-mesh-ca", "kind": "ClusterIssuer"},
                "duration": "12h",
                "renewBefore": "4h",
            },
        },
        "nats": {"url": "tls://nats.nats:4222"},
        "s3": {"endpoint": "https://minio.storage:9000"},
        "vault": {"addr": "https://vault.vault:8200"},
        "hmac": {"existingSecret": "acme-hmac", "existingSecretKey": "secret"},
        "auditPseudonym": {"existingSecret": "acme-audit-pseudonym", "existingSecretKey": "secret"},
        "credentials": {
            identity: {"existingSecret": f"acme-{identity}", "natsUser": identity} for identity in IDENTITIES
        },
        "auth": {"jwksUrl": "", "jwksExistingSecret": "acme-jwks", "issuer": "https://idp.acme.internal/"},
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "dashboards": {"enabled": True},
        "networkPolicy": {
            "egress": {
                "s3": {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [9000]},
                "otlp": {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {"kubernetes.io/metadata.name": "observability"}
                            }
                        }
                    ]
                },
            }
        },
        "gateway": {
            "image": {"repository": "gateway", "digest": "sha256:" + "1" * 64},
            "idempotency": {"existingSecret": "acme-idempotency", "existingSecretKey": "key"},
            "priorityClassName": "business-critical",
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}},
                }
            ],
        },
        "ingest": {"image": {"repository": "ingest", "digest": "sha256:" + "2" * 64}},
        "retention": {
            "image": {"repository": "retention", "digest": "sha256:" + "3" * 64},
            "receipts": {"existingSecret": "acme-receipts", "previousPublicKeys": ["A" * 43 + "="]},
        },
        "trainer": {"image": {"repository": "trainer", "digest": "sha256:" + "4" * 64}},
        "renderer": {
            "image": {"repository": "renderer", "digest": "sha256:" + "5" * 64},
            "marking": {"existingSecret": "acme-marking"},
            "safety": {"manifestSha256": SAFETY_MANIFEST_SHA256},
        },
        # The reviewed weights' manifests, pinned outside their volume.
        "baseModel": {"manifestSha256": BASE_MODEL_MANIFEST_SHA256},
    },
}


class Rendered:
    """The manifests of one render, grouped for lookups."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files
        self.docs: list[dict[str, Any]] = []
        self.hooks: list[dict[str, Any]] = []
        for path, text in files.items():
            if not path.endswith(".yaml"):  # NOTES.txt
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    (self.hooks if "/templates/tests/" in path else self.docs).append(doc)

    @property
    def everything(self) -> list[dict[str, Any]]:
        return self.docs + self.hooks

    @property
    def pods(self) -> list[dict[str, Any]]:
        """Every manifest that runs a pod: the Deployments, the bootstrap Job, the helm test pod."""
        return [doc for doc in self.everything if doc["kind"] in ("Deployment", "Job", "Pod")]

    def job(self, component: str) -> dict[str, Any]:
        return self.by_name("Job")[f"{RELEASE}-likeness-{component}"]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def by_name(self, kind: str) -> dict[str, dict[str, Any]]:
        return {doc["metadata"]["name"]: doc for doc in self.of_kind(kind)}

    def deployment(self, component: str) -> dict[str, Any]:
        return self.by_name("Deployment")[f"{RELEASE}-likeness-{component}"]

    def workload(self, component: str) -> dict[str, Any]:
        """A Deployment, or the bootstrap Job (component `bootstrap`)."""
        return self.job(component) if component == "bootstrap" else self.deployment(component)

    def secret_files(self, component: str) -> dict[str, tuple[str, str]]:
        """The files in a workload's LIKENESS_SECRETS_DIR, each as file name -> (Secret, key in it)."""
        spec = self.workload(component)["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        env = {entry["name"]: entry for entry in container.get("env", [])}
        if SECRETS_DIR_VARIABLE not in env:
            return {}
        (mount,) = [
            m for m in container["volumeMounts"] if m["mountPath"] == env[SECRETS_DIR_VARIABLE]["value"]
        ]
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        files: dict[str, tuple[str, str]] = {}
        for source in volume["projected"]["sources"]:
            secret = source["secret"]
            for item in secret["items"]:
                assert item["path"] not in files, f"{component}: two files named {item['path']}"
                files[item["path"]] = (secret["name"], item["key"])
        return files


@pytest.fixture(scope="session")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def renders(chart: helm.Chart) -> dict[str, Rendered]:
    """Every scenario rendered once for the whole session."""
    return {
        name: Rendered(chart.render(values, name=RELEASE, namespace=NAMESPACE))
        for name, values in SCENARIOS.items()
    }


@pytest.fixture(scope="session", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest, renders: dict[str, Rendered]) -> tuple[str, Rendered]:
    name: str = request.param
    return name, renders[name]


@pytest.fixture(scope="session")
def scenario_values() -> dict[str, dict[str, Any]]:
    return SCENARIOS


def stand_in(secret: str, key: str) -> str:
    """A value for a Secret's key in tests: no development value, and long enough for any key setting."""
    return f"stand-in for {secret}/{key}, not a real secret".ljust(48, ".")


@pytest.fixture
def process_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Rendered, str], CommonSettings]:
    """Reads a workload's settings as its pod would: the shared ConfigMap, its own env, its secret files.

    The files hold stand-ins (`stand_in`) in a directory of this test's own; nothing of this machine's
    LIKENESS_* environment leaks in. Raises what the settings class raises (production refusals included).
    """

    def _settings(rendered: Rendered, component: str) -> CommonSettings:
        container = rendered.workload(component)["spec"]["template"]["spec"]["containers"][0]
        environment: dict[str, str] = {}
        for source in container.get("envFrom", []):  # the bootstrap Job has none: hooks run before it exists
            environment |= rendered.by_name("ConfigMap")[source["configMapRef"]["name"]]["data"]
        for entry in container["env"]:
            if "value" in entry:
                environment[entry["name"]] = entry["value"]
            elif "secretKeyRef" in entry.get("valueFrom", {}):  # as the kubelet would: the Secret's value
                reference = entry["valueFrom"]["secretKeyRef"]
                environment[entry["name"]] = stand_in(reference["name"], reference["key"])
        directory = tmp_path / component
        directory.mkdir()
        for file, (secret, key) in rendered.secret_files(component).items():
            (directory / file).write_text(stand_in(secret, key))
        if SECRETS_DIR_VARIABLE in environment:
            environment[SECRETS_DIR_VARIABLE] = str(directory)
        for name in [name for name in os.environ if name.startswith("LIKENESS_")]:
            monkeypatch.delenv(name)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        settings_class = SETTINGS[component.split("-")[0]]
        known = {f"LIKENESS_{field.upper()}" for field in settings_class.model_fields}
        unknown = (
            {name for name in environment if name.startswith("LIKENESS_")} - known - {SECRETS_DIR_VARIABLE}
        )
        assert unknown == set(), f"the chart sets variables {component} does not read"
        return settings_class()

    return _settings


@pytest.fixture(scope="session")
def render(chart: helm.Chart) -> Any:
    """Renders other values (for tests of one setting), grouped like the scenarios."""

    def _render(values: dict[str, Any]) -> Rendered:
        return Rendered(chart.render(values, name=RELEASE, namespace=NAMESPACE))

    return _render
