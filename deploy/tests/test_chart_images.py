"""The images the chart deploys: each Dockerfile agrees with the chart and installs only its own code.

No Docker engine runs here, so the Dockerfiles are read, not built: these checks catch drift between the
images and the chart (user id, entry point) and a Dockerfile that pulls in another service's packages.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU_SERVICES = ("gateway", "ingest", "retention")
GPU_SERVICES = ("trainer", "renderer")
LOCAL_PACKAGES = {"likeness": "libs/likeness", "likeness-ml": "libs/likeness_ml"}
BUILD_TOOLS = re.compile(r"\b(apt-get|apt|gcc|g\+\+|make|build-essential|pip install|uv pip)\b")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse(path: Path) -> Dockerfile:
    """Enough of the Dockerfile syntax for these checks: continuations, comments, ARG defaults, stages."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), words[0])
            stages.append(Stage(base=base, name=words[2] if len(words) > 2 else ""))
        elif keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(args=args, stages=stages)


def local_dependencies(service: str) -> set[str]:
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0] for requirement in project["dependencies"]}
    wanted = {LOCAL_PACKAGES[name] for name in names if name in LOCAL_PACKAGES}
    if "libs/likeness_ml" in wanted:
        wanted.add("libs/likeness")  # likeness-ml depends on likeness
    return wanted


@pytest.mark.parametrize("service", CPU_SERVICES + GPU_SERVICES)
def test_dockerfile_builds_only_its_service(service: str) -> None:
    dockerfile = parse(ROOT / "services" / service / "Dockerfile")
    assert len(dockerfile.stages) >= 2, "multi-stage: build tools stay in the build stage"
    build = next(stage for stage in dockerfile.stages if stage.name == "build")
    copied = {args.split()[0] for args in build.all("COPY") if not args.startswith("--from")}
    expected = {"requirements/constraints.txt", f"services/{service}"} | local_dependencies(service)
    assert copied == expected
    (install,) = [args for args in build.all("RUN") if " install " in f" {args} " and "--constraint" in args]
    installed = {word.removeprefix("./") for word in shlex.split(install) if word.startswith("./")}
    assert installed == expected - {"requirements/constraints.txt"}


@pytest.mark.parametrize("service", CPU_SERVICES + GPU_SERVICES)
def test_final_stage_matches_the_chart(service: str) -> None:
    dockerfile = parse(ROOT / "services" / service / "Dockerfile")
    final = dockerfile.final
    assert final.all("USER") == ["10001:10001"]
    assert any("--uid 10001" in run and "--gid 10001" in run for run in final.all("RUN"))
    assert any("PYTHONDONTWRITEBYTECODE=1" in env for env in final.all("ENV"))
    assert final.all("ENTRYPOINT") == [f'["python", "-m", "{service}"]']
    assert final.all("CMD") == ([] if service == "gateway" else ['["serve"]'])
    for run in final.all("RUN"):
        assert not BUILD_TOOLS.search(run), run
    sources = {args.split()[0] for args in final.all("COPY")}
    assert sources <= {"--from=build"}, "the final stage copies only the built environment"


@pytest.mark.parametrize("service", CPU_SERVICES)
def test_cpu_images_use_python_slim(service: str) -> None:
    dockerfile = parse(ROOT / "services" / service / "Dockerfile")
    (base,) = {stage.base for stage in dockerfile.stages}
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), "pinned to a patch release"


@pytest.mark.parametrize("service", GPU_SERVICES)
def test_gpu_images_use_a_cuda_base_with_python_311(service: str) -> None:
    dockerfile = parse(ROOT / "services" / service / "Dockerfile")
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-runtime-ubuntu22\.04", dockerfile.final.base)
    assert dockerfile.args["PYTHON_VERSION"] == "3.11"
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", dockerfile.args["UV_IMAGE"])
    assert any("HF_HUB_OFFLINE=1" in env for env in dockerfile.final.all("ENV"))


def test_dockerignore_sends_only_what_the_images_copy() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    needed = {"requirements/constraints.txt"}
    for service in CPU_SERVICES + GPU_SERVICES:
        needed |= {f"services/{service}"} | local_dependencies(service)
    assert allowed == needed
    assert {"**/tests/", "**/*.egg-info/", "**/__pycache__/"} <= set(lines)


@pytest.mark.parametrize("service", CPU_SERVICES + GPU_SERVICES)
def test_bases_are_pinned_and_digest_ready(service: str) -> None:
    """Every FROM names a build argument defaulting to a pinned tag, so a release build can add a digest."""
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    dockerfile = parse(ROOT / "services" / service / "Dockerfile")
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert len(froms) == len(dockerfile.stages)
    for reference in froms:
        argument = re.fullmatch(r"\$\{(\w+)\}", reference)
        assert argument, f"FROM {reference} is not a build argument"
        default = dockerfile.args[argument.group(1)]
        name, _, tag = default.rpartition(":")
        assert name, default
        assert re.fullmatch(r"[\w.-]*\d[\w.-]*", tag), f"{default}: not a pinned tag"
        assert "@" not in default, "the digest is added at release time"
