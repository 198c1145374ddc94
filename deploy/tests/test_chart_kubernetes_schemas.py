"""Every manifest the chart renders, in every scenario, validates strictly against Kubernetes 1.29 to 1.33.

Built-in kinds use the OpenAPI schemas that `kubernetes-validate` ships (strict: an unknown field fails, as
`kubectl apply --validate=strict` would). Custom resources (KEDA, Prometheus Operator) are not in those
schemas: they are validated against the hand-written CRD schemas in crd_schemas/ (see its README). A kind
that has neither fails the test rather than being skipped.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate import utils as kv_utils

KUBERNETES_VERSIONS = ("1.29", "1.30", "1.31", "1.32", "1.33")
CRD_SCHEMAS = Path(__file__).resolve().parent / "crd_schemas"

# kubernetes-validate re-reads its multi-megabyte definitions file on every call; the files never change
# within a run, so read each once (validation itself is untouched).
kv_utils.schema_contents = functools.cache(kv_utils.schema_contents)


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator | None:
    path = CRD_SCHEMAS / f"{api_version.replace('/', '_')}_{kind}.json"
    if not path.exists():
        return None
    schema = json.loads(path.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def is_custom(api_version: str) -> bool:
    group = api_version.rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def problems_of(doc: dict[str, Any], version: str) -> list[str]:
    """What the API server of that version would refuse in this manifest (empty when it is valid)."""
    where = f"{doc['kind']}/{doc['metadata']['name']} on {version}"
    if is_custom(doc["apiVersion"]):
        validator = crd_validator(doc["apiVersion"], doc["kind"])
        if validator is None:
            return [f"{where}: no schema for the custom resource {doc['apiVersion']} {doc['kind']}"]
        return [f"{where}: {'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kv_utils.ValidationError as error:
        return [f"{where}: {'.'.join(map(str, error.path))}: {error.message}"]
    except kv_utils.SchemaNotFoundError as error:
        return [f"{where}: {error.message}"]
    return []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_strictly(renders: dict[str, Any], version: str) -> None:
    seen: set[str] = set()
    problems: list[str] = []
    for name, rendered in renders.items():
        for doc in rendered.everything:
            key = json.dumps(doc, sort_keys=True)
            if key in seen:  # the same manifest in another scenario
                continue
            seen.add(key)
            problems += [f"[{name}] {problem}" for problem in problems_of(doc, version)]
    assert problems == []
    assert len(seen) > 60  # every scenario's manifests were looked at


def test_the_kinds_rendered_are_the_expected_ones(renders: dict[str, Any]) -> None:
    kinds = {(doc["apiVersion"], doc["kind"]) for rendered in renders.values() for doc in rendered.everything}
    assert kinds >= {
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "ServiceAccount"),
        ("v1", "ConfigMap"),
        ("v1", "Pod"),
        ("policy/v1", "PodDisruptionBudget"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("keda.sh/v1alpha1", "ScaledObject"),
    }


def test_the_validation_can_fail(renders: dict[str, Any]) -> None:
    """A typo, a wrong type and an unknown custom field are each caught, so a pass means something."""
    deployment = json.loads(json.dumps(renders["defaults"].of_kind("Deployment")[0]))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = (
        True
    )
    assert problems_of(deployment, "1.33")
    service = json.loads(json.dumps(renders["defaults"].of_kind("Service")[0]))
    service["spec"]["ports"][0]["port"] = "eighty"
    assert problems_of(service, "1.29")
    scaled = json.loads(json.dumps(renders["keda-hpa"].of_kind("ScaledObject")[0]))
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 5  # KEDA wants strings
    assert problems_of(scaled, "1.30")
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert problems_of(unknown, "1.31")
