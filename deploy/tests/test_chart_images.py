"""The images the chart deploys: each Dockerfile agrees with the chart, installs only its own code, and
installs its third-party dependencies from its own lock, with hashes; the chart pulls them by digest.

No Docker engine runs here, so the Dockerfiles are read, not built: these checks catch drift between the
images, their locks (scripts/lock.py) and the chart (user id, entry point, image references).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python as helm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "deploy" / "helm" / "likeness"
CPU_SERVICES = ("gateway", "ingest", "retention")
GPU_SERVICES = ("trainer", "renderer")
SERVICES = CPU_SERVICES + GPU_SERVICES
BUILD_LOCK = "requirements/images/build.txt"
BUILD_TOOLS = re.compile(r"\b(apt-get|apt|gcc|g\+\+|make|build-essential|pip install|uv pip)\b")


def load_lock_module() -> ModuleType:
    """scripts/lock.py, which compiles and checks the locks (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("likeness_lock_script", ROOT / "scripts" / "lock.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


lock = load_lock_module()


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
    """Directories of the local packages the service's image holds: itself and what it depends on."""
    packages = lock.local_packages(ROOT)
    (target,) = [t for t in lock.TARGETS.values() if t.services == (service,)]
    return set(lock.inputs_of(target, ROOT, packages).local_paths)


def copied(stage: Stage) -> list[str]:
    """The sources of the stage's COPY instructions from the build context, in order."""
    sources: list[str] = []
    for args in stage.all("COPY"):
        if not args.startswith("--from"):
            sources += args.split()[:-1]
    return sources


def instruction_index(stage: Stage, keyword: str, needle: str) -> int:
    return next(i for i, (key, args) in enumerate(stage.instructions) if key == keyword and needle in args)


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_builds_only_its_service(service: str) -> None:
    dockerfile = parse(ROOT / "services" / service / "Dockerfile")
    assert len(dockerfile.stages) >= 2, "multi-stage: build tools stay in the build stage"
    build = next(stage for stage in dockerfile.stages if stage.name == "build")
    locks = {BUILD_LOCK, f"requirements/images/{service}.txt"}
    assert set(copied(build)) == locks | local_dependencies(service)
    (install,) = [args for args in build.all("RUN") if " --no-deps " in f" {args} "]
    installed = {word.removeprefix("./") for word in shlex.split(install) if word.startswith("./")}
    assert installed == local_dependencies(service)


def test_the_bootstrap_jobs_image_carries_the_likeness_command(render: Any) -> None:
    """The bootstrap Job runs `likeness bootstrap` in the retention image, so that image installs the CLI (its
    Dockerfile installs every local dependency: test_dockerfile_builds_only_its_service)."""
    rendered = render({})
    (job,) = rendered.of_kind("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][0] == "likeness"
    assert container["image"].rpartition(":")[0].endswith("/likeness/retention")
    assert "cli" in local_dependencies("retention")


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_installs_from_its_lock_with_hashes(service: str) -> None:
    """Third-party packages only from the image's lock, every one hash-checked (the installer refuses one the
    lock lacks), before the code is copied; then the local packages without dependencies, then a check that
    the lock satisfied them. Source builds take the locked build backend (hashes checked)."""
    build = next(
        stage for stage in parse(ROOT / "services" / service / "Dockerfile").stages if stage.name == "build"
    )
    image_lock = f"requirements/images/{service}.txt"
    runs = build.all("RUN")
    (locked,) = [run for run in runs if f"-r {image_lock}" in run]
    assert "--require-hashes" in locked.split()
    assert re.search(rf"--build-constraints? {re.escape(BUILD_LOCK)}", locked)
    (local,) = [run for run in runs if " --no-deps " in f" {run} "]
    assert re.search(rf"--build-constraints? {re.escape(BUILD_LOCK)}", local)
    assert re.search(r"\bpip (--python \S+ )?check\b|\buv pip check\b", local), (
        "the lock must satisfy the packages"
    )
    if service in GPU_SERVICES:
        assert "--require-build-hashes" in locked.split()
        assert "--require-build-hashes" in local.split()
    else:  # pip: the build stage's own pip comes from the lock first (it checks build-constraint hashes)
        assert any(f"pip install --require-hashes -r {BUILD_LOCK}" in run for run in runs)
    installs = [run for run in runs if re.search(r"\b(pip|uv pip) (--python \S+ )?install\b", run)]
    assert installs == [run for run in installs if "--require-hashes" in run or " --no-deps " in f" {run} "]
    first_code_copy = min(instruction_index(build, "COPY", path) for path in local_dependencies(service))
    assert instruction_index(build, "RUN", f"-r {image_lock}") < first_code_copy, (
        "the lock's layer comes first"
    )


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_matches_the_chart(service: str) -> None:
    dockerfile = parse(ROOT / "services" / service / "Dockerfile")
    final = dockerfile.final
    assert final.all("USER") == ["10001:10001"]
    assert any("--uid 10001" in run and "--gid 10001" in run for run in final.all("RUN"))
    assert any("PYTHONDONTWRITEBYTECODE=1" in env for env in final.all("ENV"))
    # `python -m <service> <role>`, as the chart runs it (command + args); the image alone serves.
    assert final.all("ENTRYPOINT") == [f'["python", "-m", "{service}"]']
    assert final.all("CMD") == ['["serve"]']
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
    needed = {"requirements/images"}
    sources: set[str] = set()
    for service in SERVICES:
        needed |= local_dependencies(service)
        build = next(s for s in parse(ROOT / "services" / service / "Dockerfile").stages if s.name == "build")
        sources |= set(copied(build))
    assert allowed == needed
    assert all(any(source == path or source.startswith(f"{path}/") for path in allowed) for source in sources)
    assert {"**/tests/", "**/*.egg-info/", "**/__pycache__/"} <= set(lines)


@pytest.mark.parametrize("service", SERVICES)
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


# --- the locks (scripts/lock.py) ---------------------------------------------------------------------------


def test_every_lock_is_consistent_with_its_inputs() -> None:
    """`make lock-check`: hashes everywhere, every declared dependency pinned, inputs unchanged since."""
    assert lock.check(ROOT) == []


def test_every_image_has_its_own_lock() -> None:
    images = {target.services[0]: target.lock for target in lock.TARGETS.values() if target.services}
    assert images == {service: f"requirements/images/{service}.txt" for service in SERVICES}


def locked(path: str) -> dict[str, Any]:
    entries: dict[str, Any]
    entries, problems = lock.read_lock((ROOT / path).read_text())
    assert problems == []
    return entries


def test_torch_is_the_cpu_wheel_in_the_dev_venv_and_cuda_in_gpu_images_only() -> None:
    assert locked("requirements/dev.lock.txt")["torch"].version == "2.13.0+cpu"
    for service in GPU_SERVICES:
        entries = locked(f"requirements/images/{service}.txt")
        assert entries["torch"].version == "2.13.0"  # PyPI's build: CUDA, with its libraries as wheels
        assert any(name.startswith("nvidia-") for name in entries)
    for service in CPU_SERVICES:
        assert not {"torch", "diffusers", "transformers"} & set(locked(f"requirements/images/{service}.txt"))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """What the lock check reads, copied: every pyproject.toml and requirements/."""
    for pyproject in (p for pattern in lock.PACKAGE_GLOBS for p in ROOT.glob(f"{pattern}/pyproject.toml")):
        relative = pyproject.relative_to(ROOT)
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pyproject, tmp_path / relative)
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    assert lock.check(tmp_path) == []
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_lock_check_fails_when_a_pyproject_declares_a_dependency_a_lock_lacks(tree: Path) -> None:
    edit(tree / "services/gateway/pyproject.toml", '"httpx>=0.28"', '"httpx>=0.28", "leftpad>=1.0"')
    problems = lock.check(tree)
    lacking = {problem.split(":")[0] for problem in problems if "lacks leftpad>=1.0" in problem}
    assert lacking == {"requirements/dev.lock.txt", "requirements/images/gateway.txt"}


def test_lock_check_fails_when_a_pin_no_longer_satisfies_a_pyproject(tree: Path) -> None:
    edit(tree / "libs/likeness/pyproject.toml", '"hvac>=2.3"', '"hvac>=9"')
    problems = lock.check(tree)
    unsatisfied = {p.split(":")[0] for p in problems if "hvac==2.4.0 does not satisfy hvac>=9" in p}
    # every lock that holds libs/likeness
    assert unsatisfied == {"requirements/dev.lock.txt"} | {f"requirements/images/{s}.txt" for s in SERVICES}


def test_lock_check_fails_when_an_input_changes_or_a_hash_goes_missing(tree: Path) -> None:
    edit(tree / "requirements/constraints.txt", "uvicorn==0.54.0", "uvicorn==0.54.1")
    retention = tree / "requirements/images/retention.txt"
    retention.write_text(
        re.sub(r"(?m)^(hvac==2\.4\.0) \\\n(    --hash=\S+(?: \\)?\n)+", r"\1\n", retention.read_text())
    )
    problems = "\n".join(lock.check(tree))
    assert (
        "requirements/images/gateway.txt: uvicorn==0.54.0 but requirements/constraints.txt says" in problems
    )
    assert "requirements/images/gateway.txt: its inputs changed since it was compiled" in problems
    assert "requirements/images/retention.txt: hvac: no --hash=sha256 entry" in problems
    assert "requirements/images/ingest.txt" not in problems  # no uvicorn there: its inputs did not change


# --- the chart pulls the images by digest ------------------------------------------------------------------


def digests() -> dict[str, str]:
    return {service: "sha256:" + format(number, "x") * 64 for number, service in enumerate(SERVICES, 10)}


def test_a_digest_replaces_the_tag_in_every_container(render: Any) -> None:
    values: dict[str, Any] = {"image": {"registry": "registry.acme.internal/likeness", "tag": "1.2.3"}}
    for service, digest in digests().items():
        values[service] = {"image": {"repository": service, "tag": "9.9.9", "digest": digest}}
    rendered = render(values)
    images = {}
    for doc in rendered.everything:
        if doc["kind"] in ("Deployment", "Job", "Pod"):
            spec = doc["spec"]["template"]["spec"] if doc["kind"] != "Pod" else doc["spec"]
            for container in spec.get("initContainers", []) + spec["containers"]:
                images[doc["metadata"]["name"], container["name"]] = container["image"]
    assert len(images) >= 9  # five APIs, two workers, the bootstrap Job, the helm test pod
    for image in images.values():
        repository, _, digest = image.partition("@")
        service = repository.rsplit("/", 1)[1]
        assert repository == f"registry.acme.internal/likeness/{service}"
        assert digest == digests()[service]


def test_without_a_digest_the_tag_is_used(render: Any) -> None:
    rendered = render({"gateway": {"image": {"tag": "2.0.0"}}})
    image = rendered.deployment("gateway")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/likeness/gateway:2.0.0"


def production_example() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART_DIR / "values-production.yaml").read_text())
    return values


def test_the_production_example_refuses_to_render_without_every_digest(chart: helm.Chart) -> None:
    values = production_example()
    assert values["image"]["requireDigests"] is True
    with pytest.raises(helm.HelmRenderError) as refused:
        chart.render(values, name="demo", namespace="likeness")
    assert all(f"{service}.image.digest" in str(refused.value) for service in SERVICES)
    for service, digest in digests().items():
        values[service]["image"]["digest"] = digest
    del values["ingest"]["image"]["digest"]
    with pytest.raises(helm.HelmRenderError, match=r"set ingest\.image\.digest \("):
        chart.render(values, name="demo", namespace="likeness")


def test_the_production_example_renders_with_digests(chart: helm.Chart) -> None:
    values = production_example()
    for service, digest in digests().items():
        values[service]["image"]["digest"] = digest
    files = chart.render(values, name="demo", namespace="likeness")
    text = "\n".join(files.values())
    images = re.findall(r"image: \"([^\"]+)\"", text)
    assert len(images) >= 8
    assert all("@sha256:" in image for image in images)
    report = helm.lint(CHART_DIR, values, strict=True, namespace="likeness", kube_version="v1.33.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []  # 2: warning
