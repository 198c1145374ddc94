"""The bootstrap Job: `likeness bootstrap` before every install and upgrade, as a least-privileged identity.

It provisions what the services only bind to (streams, KV buckets, consumers, the bucket: see
`likeness.provisioning`), so it must run before them, fail the release when it fails, and hold nothing but
the bootstrap identity's NATS user and S3 identity: no Kubernetes or Vault token, no route but to DNS, NATS
and S3. Hooks run before the release's own resources exist, so what it needs is a hook too, created first,
and it reads no ConfigMap of the release.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from likeness.provisioning import BOOTSTRAP, Bounds, identity
from likeness_cli.bootstrap_commands import BootstrapSettings
from likeness_cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "demo"
PREFIX = f"{RELEASE}-likeness"
HOOK_EVENTS = {"pre-install", "pre-upgrade"}

Manifest = dict[str, Any]
Rendered = Any  # conftest.Rendered


def hooks_of(rendered: Rendered) -> dict[str, Manifest]:
    """The bootstrap's hook resources, by kind."""
    found = {}
    for doc in rendered.docs:
        annotations = doc["metadata"].get("annotations", {})
        if "helm.sh/hook" in annotations:
            assert doc["metadata"]["labels"]["app.kubernetes.io/component"] == "bootstrap"
            found[doc["kind"]] = doc
    return found


def hook_order_problems(hooks: dict[str, Manifest]) -> list[str]:
    """What would keep the Job from running first and alone, or keep its failure from failing the release."""
    problems = []
    weights = {}
    for kind, doc in hooks.items():
        annotations = doc["metadata"]["annotations"]
        if set(annotations["helm.sh/hook"].split(",")) != HOOK_EVENTS:
            problems.append(f"{kind}: hook {annotations['helm.sh/hook']}")
        if "before-hook-creation" not in annotations.get("helm.sh/hook-delete-policy", ""):
            problems.append(f"{kind}: a leftover from the last run would make the next one fail")
        weights[kind] = int(annotations.get("helm.sh/hook-weight", "0"))
    for kind in ("ServiceAccount", "NetworkPolicy"):
        if kind in hooks and weights[kind] >= weights["Job"]:
            problems.append(f"{kind} is created after the Job that needs it")
    return problems


def test_the_job_and_what_it_needs_are_hooks_created_in_order(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    hooks = hooks_of(rendered)
    expected = {"Job", "ServiceAccount"} | (
        set() if name == "custom-images-no-networkpolicy" else {"NetworkPolicy"}
    )
    assert set(hooks) == expected
    assert hook_order_problems(hooks) == []
    assert hooks["ServiceAccount"]["metadata"]["name"] == f"{PREFIX}-bootstrap"
    spec = hooks["Job"]["spec"]
    assert spec["template"]["spec"]["serviceAccountName"] == f"{PREFIX}-bootstrap"
    # A failed pod is retried a little, then the Job fails, and so does the install or upgrade.
    assert spec["backoffLimit"] == 2
    assert spec["activeDeadlineSeconds"] == 240
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_the_hook_order_check_can_fail(renders: dict[str, Rendered]) -> None:
    hooks = hooks_of(renders["defaults"])
    hooks["NetworkPolicy"]["metadata"]["annotations"]["helm.sh/hook-weight"] = "5"
    hooks["Job"]["metadata"]["annotations"]["helm.sh/hook"] = "post-install"
    assert hook_order_problems(hooks) == [
        "Job: hook post-install",
        "NetworkPolicy is created after the Job that needs it",
    ]


def test_it_runs_likeness_bootstrap_from_the_retention_image(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    (container,) = rendered.job("bootstrap")["spec"]["template"]["spec"]["containers"]
    (retention,) = rendered.deployment("retention")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == retention["image"], "the retention image carries the likeness command"
    assert container["command"] == ["likeness", "bootstrap"]
    # The command line the image runs is one the CLI accepts, and means provisioning (not a render).
    args = build_parser().parse_args([*container["command"][1:], *container.get("args", [])])
    assert args.command == "bootstrap"
    assert args.bootstrap_command is None
    scripts = tomllib.loads((ROOT / "cli" / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["likeness"] == "likeness_cli.main:main"


def test_its_options_follow_the_values(render: Any) -> None:
    rendered = render({"bootstrap": {"strict": True, "auditMaxBytes": 8 * 1024**3}})
    (container,) = rendered.job("bootstrap")["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["--strict", "--audit-max-bytes", str(8 * 1024**3)]
    args = build_parser().parse_args([*container["command"][1:], *container["args"]])
    assert (args.strict, args.audit_max_bytes) == (True, 8 * 1024**3)


def test_its_stream_bounds_reach_the_bootstrap_settings(render: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart's bounds arrive as the settings `likeness bootstrap` reads, and name real streams."""
    bounds = {"maxBytes": {"LIKENESS_EVENTS": 4 * 1024**3, "photos": 256 * 1024**2}}
    bounds["maxAgeSeconds"] = {"LIKENESS_JOBS_RENDER": 86400}
    rendered = render({"bootstrap": {"streamBounds": bounds}})
    (container,) = rendered.job("bootstrap")["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    monkeypatch.setenv("LIKENESS_STREAM_MAX_BYTES", env["LIKENESS_STREAM_MAX_BYTES"])
    monkeypatch.setenv("LIKENESS_STREAM_MAX_AGE_SECONDS", env["LIKENESS_STREAM_MAX_AGE_SECONDS"])
    settings = BootstrapSettings()
    assert settings.stream_max_bytes == bounds["maxBytes"]
    assert settings.stream_max_age_seconds == {"LIKENESS_JOBS_RENDER": 86400.0}
    assert Bounds(settings.stream_max_bytes, settings.stream_max_age_seconds).problems() == []
    # Without bounds the Job sets neither, and the code's bounds apply.
    (plain,) = render({}).job("bootstrap")["spec"]["template"]["spec"]["containers"]
    assert not {"LIKENESS_STREAM_MAX_BYTES", "LIKENESS_STREAM_MAX_AGE_SECONDS"} & {
        e["name"] for e in plain["env"]
    }


def test_its_stream_replicas_reach_the_bootstrap_settings(
    render: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NATS cluster's 3 copies arrive as `LIKENESS_STREAM_REPLICAS`; the default is one server's 1."""
    for values, replicas in (({}, 1), ({"bootstrap": {"streamReplicas": 3}}, 3)):
        (container,) = render(values).job("bootstrap")["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item.get("value") for item in container["env"]}
        monkeypatch.setenv("LIKENESS_STREAM_REPLICAS", env["LIKENESS_STREAM_REPLICAS"])
        assert BootstrapSettings().stream_replicas == replicas


def test_it_holds_the_bootstrap_identitys_credentials_only(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    secret = "acme-bootstrap" if name == "production" else "likeness-bootstrap"
    assert rendered.secret_files("bootstrap") == {
        file: (secret, file) for file in ("nats_password", "s3_access_key", "s3_secret_key")
    }
    spec = rendered.job("bootstrap")["spec"]["template"]["spec"]
    volumes = {volume["name"] for volume in spec["volumes"]}
    assert volumes <= {"secrets", "ca-bundle"}, "no Vault token, no certificate, no identity provider's keys"
    assert spec["automountServiceAccountToken"] is False
    # The spec says what it may do: provision, with an S3 identity that configures the bucket only.
    spec_of_bootstrap = identity(BOOTSTRAP)
    assert spec_of_bootstrap.nats.provisions
    assert spec_of_bootstrap.s3 is not None
    assert spec_of_bootstrap.s3.configure_bucket
    assert spec_of_bootstrap.s3.empty, "it reads, writes and deletes no object"


def test_it_reads_no_configmap_of_the_release(scenario: tuple[str, Rendered]) -> None:
    """Hooks run before the release's resources exist: a reference to one would keep the pod from starting."""
    _, rendered = scenario
    release_config_maps = set(rendered.by_name("ConfigMap"))
    spec = rendered.job("bootstrap")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert "envFrom" not in container
    referenced = {v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v}
    referenced |= {
        e["valueFrom"]["configMapKeyRef"]["name"]
        for e in container["env"]
        if "configMapKeyRef" in e.get("valueFrom", {})
    }
    assert not referenced & release_config_maps


def test_it_starts_in_production_with_what_the_chart_gives_it(
    scenario: tuple[str, Rendered], scenario_values: dict[str, dict[str, Any]], process_settings: Any
) -> None:
    """`likeness bootstrap` reads its settings as every service does; they pass its production checks."""
    name, rendered = scenario
    settings = process_settings(rendered, "bootstrap")
    assert isinstance(settings, BootstrapSettings)
    assert settings.is_production
    values = scenario_values[name]
    assert settings.nats_user == "bootstrap"
    assert settings.nats_url == values.get("nats", {}).get("url", "tls://nats.nats.svc.cluster.local:4222")
    assert settings.s3_endpoint == values.get("s3", {}).get("endpoint", "https://s3.example.internal")
    assert settings.s3_bucket == "likeness-data"
    assert settings.nats_password.get_secret_value().startswith("stand-in for ")


def test_without_its_nats_password_it_would_refuse_to_start(render: Any, process_settings: Any) -> None:
    rendered = render({})
    (volume,) = [
        v for v in rendered.job("bootstrap")["spec"]["template"]["spec"]["volumes"] if v["name"] == "secrets"
    ]
    for source in volume["projected"]["sources"]:
        source["secret"]["items"] = [i for i in source["secret"]["items"] if i["path"] != "nats_password"]
    with pytest.raises(ValueError, match="LIKENESS_NATS_PASSWORD is a development value"):
        process_settings(rendered, "bootstrap")


def test_it_can_be_left_to_the_operator(render: Any) -> None:
    rendered = render(
        {"bootstrap": {"enabled": False}, "credentials": {"bootstrap": {"existingSecret": "x"}}}
    )
    assert hooks_of(rendered) == {}
    assert f"{PREFIX}-bootstrap" not in rendered.by_name("ServiceAccount")
