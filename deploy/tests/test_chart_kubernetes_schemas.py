"""Every manifest the chart renders, in every scenario, validates strictly against Kubernetes 1.29 to 1.33.

Built-in kinds use the OpenAPI schemas that `kubernetes-validate` ships (strict: an unknown field fails, as
`kubectl apply --validate=strict` would). Custom resources (KEDA, Prometheus Operator, cert-manager) are not
in those schemas: they are validated against the CRD schemas in crd_schemas/ (see its README; cert-manager's
is converted from its published CRD, and converted again here to prove it). A kind that has neither fails
the test rather than being skipped.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate import utils as kv_utils

KUBERNETES_VERSIONS = ("1.29", "1.30", "1.31", "1.32", "1.33")
CRD_SCHEMAS = Path(__file__).resolve().parent / "crd_schemas"


def load_converter() -> ModuleType:
    """crd_schemas/convert_crd.py (a script beside the schemas it writes, not a package)."""
    spec = importlib.util.spec_from_file_location("likeness_convert_crd", CRD_SCHEMAS / "convert_crd.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


converter = load_converter()

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
        ("batch/v1", "Job"),
        ("cert-manager.io/v1", "Certificate"),
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
    scaled["spec"]["triggers"][0]["metadata"]["threshold"] = 5  # KEDA wants strings
    assert problems_of(scaled, "1.30")
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert problems_of(unknown, "1.31")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("usages", ["server auth", "client authentication"]),  # not one of cert-manager's usages
        ("privateKey", {"algorithm": "ECDSA", "size": 256, "rotation": "Always"}),  # rotationPolicy
        ("issuerRef", {"kind": "Issuer"}),  # no name
        ("uris", "spiffe://likeness/gateway"),  # a list
    ],
)
def test_a_wrong_certificate_is_refused(renders: dict[str, Any], field: str, value: Any) -> None:
    certificate = json.loads(json.dumps(renders["production"].of_kind("Certificate")[0]))
    assert problems_of(certificate, "1.33") == []
    certificate["spec"][field] = value
    assert problems_of(certificate, "1.33")


@pytest.mark.parametrize("name", sorted(converter.CONVERSIONS))
def test_converted_schemas_are_the_published_crds(name: str) -> None:
    """Each converted schema is what convert_crd.py makes of the CRD kept beside it: never edited by hand."""
    crd, version, source = converter.CONVERSIONS[name]
    assert (CRD_SCHEMAS / name).read_text() == converter.convert_file(CRD_SCHEMAS / crd, version, source), (
        f"run: python deploy/tests/crd_schemas/convert_crd.py (and never edit {name})"
    )


def test_the_conversion_is_strict() -> None:
    """An unknown field is refused on every object of the CRD that lists its fields, nested ones included."""
    crd = {
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "size": {"x-kubernetes-int-or-string": True},
                                        "inner": {"type": "object", "properties": {"a": {"type": "string"}}},
                                        "free": {
                                            "type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True,
                                        },
                                    },
                                },
                                "status": {"type": "object"},
                            },
                        }
                    },
                }
            ],
        },
    }
    validator = jsonschema.Draft7Validator(converter.convert(crd, "v1", "a test", "0" * 64))
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    good = widget | {"spec": {"size": "10%", "inner": {"a": "x"}, "free": {"anything": 1}}}
    assert list(validator.iter_errors(good)) == []
    for bad in (
        widget | {"spec": {"inner": {"a": "x", "b": "typo"}}},
        widget | {"spec": {"sise": 1}},
        widget | {"spec": {"size": 1.5}},
        widget | {"metadata": {"name": "w", "labelz": {}}},
        widget | {"status": {}},
    ):
        assert list(validator.iter_errors(bad)), bad
