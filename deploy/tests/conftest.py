"""Shared by the chart tests: the value combinations ("scenarios") and their renders, made once per session.

Rendering uses helm-python-sdk (Helm's own Go engine through a C library), so no helm binary, cluster or
network is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

CHART_DIR = Path(__file__).resolve().parents[1] / "helm" / "likeness"
RELEASE = "demo"
NAMESPACE = "likeness"
DIGEST = "sha256:" + "ab" * 32

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
        "keda": {"enabled": True, "natsMonitoringEndpoint": "nats-mon.nats:8222"},
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
    # What a platform team would run: pinned digests, every credential from its own Secret, a private CA,
    # egress pinned to CIDRs, traces exported.
    "production": {
        "image": {
            "registry": "registry.acme.internal/likeness",
            "pullPolicy": "IfNotPresent",
            "requireDigests": True,
        },
        "imagePullSecrets": [{"name": "acme-pull"}],
        "config": {"otlpEndpoint": "https://otel-collector.observability:4317", "logLevel": "WARNING"},
        "tls": {"caBundle": {"existingConfigMap": "acme-ca", "key": "bundle.pem"}},
        "nats": {
            "url": "tls://nats.nats:4222",
            "existingSecret": "likeness-nats",
            "existingSecretUrlKey": "u",
        },
        "s3": {"endpoint": "https://minio.storage:9000", "existingSecret": "acme-s3"},
        "vault": {"addr": "https://vault.vault:8200"},
        "hmac": {"existingSecret": "acme-hmac", "existingSecretKey": "secret"},
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
            "auth": {
                "jwksUrl": "",
                "jwksExistingSecret": "acme-jwks",
                "issuer": "https://idp.acme.internal/",
            },
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
        },
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

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def by_name(self, kind: str) -> dict[str, dict[str, Any]]:
        return {doc["metadata"]["name"]: doc for doc in self.of_kind(kind)}

    def deployment(self, component: str) -> dict[str, Any]:
        return self.by_name("Deployment")[f"{RELEASE}-likeness-{component}"]


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


@pytest.fixture(scope="session")
def render(chart: helm.Chart) -> Any:
    """Renders other values (for tests of one setting), grouped like the scenarios."""

    def _render(values: dict[str, Any]) -> Rendered:
        return Rendered(chart.render(values, name=RELEASE, namespace=NAMESPACE))

    return _render
