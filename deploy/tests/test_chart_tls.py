"""Mutual TLS on every gRPC hop: each process with one holds its own certificate, the one the code expects.

A process with a gRPC hop (the gateway calls; retention, ingest and the serve roles of trainer and renderer
serve) mounts its certificate's Secret whole (tls.crt, tls.key, ca.crt: no subPath, whose files the kubelet
never updates, so a renewal would never arrive) at LIKENESS_TLS_DIR. With cert-manager, each identity gets
one Certificate that carries what `likeness.grpc_tls` reads: the SPIFFE ID servers authorize
(spiffe://likeness/<identity>) and the DNS name the gateway checks a server against (<identity>,
`gateway.backends.BACKEND_IDENTITIES`). The kubelet's probes reach a plaintext health port, which no
NetworkPolicy opens; the API port admits exactly the callers each service's caller table names.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import helm_python as helm
import pytest

from gateway.backends import BACKEND_IDENTITIES
from likeness.grpc_tls import TLS_FILES, identity_of_spiffe_id, spiffe_id

RELEASE = "demo"
NAMESPACE = "likeness"
PREFIX = f"{RELEASE}-likeness"
TLS_DIR_VARIABLE = "LIKENESS_TLS_DIR"
#: Workload -> the identity it runs as, for every workload with a gRPC hop.
GRPC_WORKLOADS = {
    "gateway": "gateway",
    "retention": "retention",
    "ingest": "ingest",
    "trainer-serve": "trainer",
    "renderer-serve": "renderer",
}
SERVERS = ("retention", "ingest", "trainer", "renderer")
CERT_MANAGER = {"tls": {"certManager": {"enabled": True, "issuerRef": {"name": "mesh-ca"}}}}

Manifest = dict[str, Any]
Rendered = Any  # conftest.Rendered


def component(doc: Manifest) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def container_of(doc: Manifest) -> Manifest:
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    return dict(container)


def env_of(doc: Manifest) -> dict[str, str]:
    return {entry["name"]: entry.get("value", "") for entry in container_of(doc).get("env", [])}


def mounted_tls_secret(doc: Manifest) -> str | None:
    """The Secret a workload mounts at LIKENESS_TLS_DIR, checked to be mounted whole, read-only, with the
    three files and nothing else (None: no LIKENESS_TLS_DIR)."""
    directory = env_of(doc).get(TLS_DIR_VARIABLE)
    if directory is None:
        return None
    container = container_of(doc)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    assert mount["readOnly"] is True
    assert "subPath" not in mount, "a subPath mount never sees a renewed certificate"
    assert "subPathExpr" not in mount
    others = [m["mountPath"] for m in container["volumeMounts"] if m is not mount]
    assert not any(directory.startswith(f"{path}/") or path.startswith(f"{directory}/") for path in others)
    (volume,) = [v for v in doc["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    secret = volume["secret"]
    assert [item["key"] for item in secret["items"]] == list(TLS_FILES)
    assert all(item["key"] == item["path"] for item in secret["items"])
    assert "optional" not in secret, "a missing certificate keeps the pod from starting"
    assert secret["defaultMode"] == 0o400
    return str(secret["secretName"])


def test_every_process_with_a_grpc_hop_mounts_its_own_certificate(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    certificates = name == "production"  # cert-manager there; the operator's Secrets elsewhere
    for doc in rendered.of_kind("Deployment") + rendered.of_kind("Job"):
        kind = component(doc)
        secret = mounted_tls_secret(doc)
        if kind not in GRPC_WORKLOADS:  # GPU workers and the bootstrap Job neither call nor serve gRPC
            assert secret is None, kind
            assert not [v for v in doc["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"], kind
            continue
        identity = GRPC_WORKLOADS[kind]
        expected = f"{PREFIX}-{identity}-tls" if certificates else f"likeness-{identity}-tls"
        assert secret == expected, kind


def certificate_problems(certificate: Manifest, values: Manifest, rendered: Rendered) -> list[str]:
    """What in a rendered Certificate disagrees with the code and the values (empty: nothing)."""
    spec = certificate["spec"]
    kind = component(certificate)
    identity = GRPC_WORKLOADS[kind]
    settings = values["tls"]["certManager"]
    problems = []
    (uri,) = spec["uris"] or [""]
    if uri != spiffe_id(identity) or identity_of_spiffe_id(uri) != identity:
        problems.append(f"{kind}: its SPIFFE ID is {uri!r}, the code reads {spiffe_id(identity)!r}")
    if spec["dnsNames"][0] != identity:
        problems.append(f"{kind}: its first DNS name is {spec['dnsNames'][0]!r}, not its identity")
    if identity in SERVERS:
        service = rendered.by_name("Service")[f"{PREFIX}-{identity}"]["metadata"]["name"]
        names = [service, f"{service}.{NAMESPACE}", f"{service}.{NAMESPACE}.svc"]
        names.append(f"{service}.{NAMESPACE}.svc.cluster.local")
        if spec["dnsNames"][1:] != names:
            problems.append(f"{kind}: its Service names are {spec['dnsNames'][1:]}")
    elif spec["dnsNames"] != [identity]:
        problems.append(f"{kind}: the gateway serves no TLS, so it needs no other name")
    if set(spec["usages"]) != {"server auth", "client auth", "digital signature"}:
        problems.append(f"{kind}: usages {spec['usages']}")
    private_key = {"algorithm": "ECDSA", "size": 256, "encoding": "PKCS8", "rotationPolicy": "Always"}
    if spec["privateKey"] != private_key:
        problems.append(f"{kind}: private key {spec['privateKey']}")
    issuer = {"name": "", "kind": "Issuer", "group": "cert-manager.io"} | settings["issuerRef"]
    if spec["issuerRef"] != issuer:
        problems.append(f"{kind}: issuer {spec['issuerRef']}")
    if (spec["duration"], spec["renewBefore"]) != (settings["duration"], settings["renewBefore"]):
        problems.append(f"{kind}: lifetime {spec['duration']}, renewed {spec['renewBefore']} before")
    mounted = mounted_tls_secret(rendered.deployment(kind))
    if spec["secretName"] != mounted:
        problems.append(f"{kind}: writes {spec['secretName']}, its pods mount {mounted}")
    return problems


def test_cert_manager_issues_each_identity_the_certificate_the_code_reads(
    renders: dict[str, Rendered], scenario_values: dict[str, Manifest]
) -> None:
    rendered = renders["production"]
    certificates = rendered.of_kind("Certificate")
    assert sorted(component(c) for c in certificates) == sorted(GRPC_WORKLOADS)
    assert len({c["metadata"]["name"] for c in certificates}) == len(GRPC_WORKLOADS)
    for certificate in certificates:
        assert certificate_problems(certificate, scenario_values["production"], rendered) == []
    for name, other in renders.items():  # the other scenarios take the operator's Secrets
        assert name == "production" or not other.of_kind("Certificate"), name


def test_the_certificate_check_can_fail(
    renders: dict[str, Rendered], scenario_values: dict[str, Manifest]
) -> None:
    rendered = renders["production"]
    (retention,) = [c for c in rendered.of_kind("Certificate") if component(c) == "retention"]
    certificate = json.loads(json.dumps(retention))
    certificate["spec"]["uris"] = [spiffe_id("gateway")]  # another identity's
    certificate["spec"]["secretName"] = "someone-else-tls"
    problems = certificate_problems(certificate, scenario_values["production"], rendered)
    assert len(problems) == 2
    assert "its SPIFFE ID is 'spiffe://likeness/gateway'" in problems[0]
    assert "writes someone-else-tls" in problems[1]


def test_the_gateway_finds_each_backend_under_a_name_its_certificate_carries(render: Any) -> None:
    """The gateway checks a server against BACKEND_IDENTITIES (its DNS name), not the address it dials."""
    rendered = render(CERT_MANAGER)
    by_identity = {GRPC_WORKLOADS[component(c)]: c["spec"] for c in rendered.of_kind("Certificate")}
    gateway_env = env_of(rendered.deployment("gateway"))
    for backend, expected_identity in BACKEND_IDENTITIES.items():
        assert expected_identity in by_identity[backend]["dnsNames"], backend
        host = gateway_env[f"LIKENESS_{backend.upper()}_ADDR"].rsplit(":", 1)[0]
        assert host in by_identity[backend]["dnsNames"], "grpcurl and other clients can check the address too"


def test_the_api_port_admits_exactly_the_callers_of_each_caller_table(renders: dict[str, Rendered]) -> None:
    """Each service's caller table (`<service>.callers.CALLERS`, enforced on the certificate) names who may
    call it; the NetworkPolicy admits the pods of those identities to the API port and nobody else."""
    rendered = renders["defaults"]
    policies = {
        policy["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component"): policy
        for policy in rendered.of_kind("NetworkPolicy")
    }
    workload_of = {identity: kind for kind, identity in GRPC_WORKLOADS.items()}
    for service in SERVERS:
        callers = set().union(*importlib.import_module(f"{service}.callers").CALLERS.values())
        kind = workload_of[service]
        (rule,) = [r for r in policies[kind]["spec"]["ingress"] if r["ports"][0]["port"] == "grpc"]
        admitted = {
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in rule["from"]
        }
        assert admitted == {workload_of[caller] for caller in callers}, service
        assert all(port["port"] != "health" for r in policies[kind]["spec"]["ingress"] for port in r["ports"])


def test_without_cert_manager_each_certificate_secret_is_required(render: Any) -> None:
    with pytest.raises(helm.HelmRenderError, match=r"tls\.existingSecrets\.renderer is required"):
        render({"tls": {"existingSecrets": {"renderer": ""}}})
    # Not needed while cert-manager makes them.
    render(CERT_MANAGER | {"tls": CERT_MANAGER["tls"] | {"existingSecrets": {"renderer": ""}}})


def test_cert_manager_needs_an_issuer(render: Any) -> None:
    with pytest.raises(helm.HelmRenderError, match=r"tls\.certManager\.issuerRef\.name is required"):
        render({"tls": {"certManager": {"enabled": True}}})


def test_certificates_follow_the_identities_deployed(render: Any) -> None:
    """No certificate for what is not deployed or has no gRPC hop (GPU workers, the bootstrap Job)."""
    rendered = render(CERT_MANAGER | {"trainer": {"work": {"enabled": False}}})
    assert sorted(component(c) for c in rendered.of_kind("Certificate")) == sorted(GRPC_WORKLOADS)
