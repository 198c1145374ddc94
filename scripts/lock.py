"""The repository's locks: every transitive dependency pinned, with the sha256 of each distribution.

    python scripts/lock.py compile [--upgrade] [TARGET ...]   regenerate locks with uv (needs PyPI)
    python scripts/lock.py check                              offline, about a second: see below
    python scripts/lock.py verify                             regenerate into a temporary directory and diff

Targets and their locks:
  dev        requirements/dev.lock.txt      the dev venv (requirements/dev.txt: editables, tools, torch CPU)
  tools      requirements/tools.lock.txt    the tools venv (requirements/tools.txt: checkov, uv)
  build      requirements/images/build.txt  pip and the build backend (each build-system.requires)
  gateway, ingest, retention, trainer, renderer
             requirements/images/<name>.txt  one image's graph: its service and the libraries it depends on

The inputs of a lock are the pyproject files of the local packages it covers, the requirements file named
above (dev, tools) and requirements/constraints.txt (all but tools). Local packages are given to uv as paths
and left out of the lock (a directory has no hash; installs add them with --no-deps), so a name like
`likeness` is never looked up on an index.

`check` needs neither uv nor the network. For each lock it verifies that every entry is `name==version`
with at least one hash and nothing else (no path, URL, index or editable line); that every dependency a
covered pyproject declares (with the extras asked for, markers evaluated for Linux x86_64 CPython 3.11) is
pinned to a version satisfying it; that every pin agrees with constraints.txt; and that the fingerprint of
the inputs recorded in the lock's header matches the inputs now, so any edit of a pyproject dependency,
the requirements file or a relevant constraint asks for `make lock`. `verify` is the full check: it
recompiles every lock from the committed ones (so unchanged inputs keep their pins) and diffs.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_GLOBS = ("libs/*", "services/*", "cli", "devkit", "clients/python")
CONSTRAINTS = "requirements/constraints.txt"
PYTHON = "3.11"
# glibc of each base: python:3.11-slim-bookworm (Debian 12: 2.36), nvidia/cuda:*-ubuntu22.04 (2.35). The
# dev and tools venvs take manylinux_2_28 (the torch CPU wheel's own tag), which any current distro meets.
BOOKWORM = "x86_64-manylinux_2_36"
JAMMY = "x86_64-manylinux_2_35"
DEV_PLATFORM = "x86_64-manylinux_2_28"
FINGERPRINT = re.compile(r"^# inputs-sha256: ([0-9a-f]{64})$", re.MULTILINE)
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Target:
    name: str
    lock: str
    description: str
    platform: str
    services: tuple[str, ...] = ()  # image targets: the service directory under services/
    requirements: str = ""  # dev, tools: the requirements file that is the lock's input
    constrained: bool = True
    find_links: bool = False  # dev: torch's CPU wheel comes from pip's find-links directory
    build: bool = False  # the build target: every pyproject's build-system.requires, plus pip


TARGETS = {
    target.name: target
    for target in (
        Target(
            "dev",
            "requirements/dev.lock.txt",
            "the dev venv",
            DEV_PLATFORM,
            requirements="requirements/dev.txt",
            find_links=True,
        ),
        Target(
            "tools",
            "requirements/tools.lock.txt",
            "the tools venv (.venv-tools)",
            DEV_PLATFORM,
            requirements="requirements/tools.txt",
            constrained=False,
        ),
        Target(
            "build",
            "requirements/images/build.txt",
            "pip and the build backend of every image",
            JAMMY,
            build=True,
        ),
        Target("gateway", "requirements/images/gateway.txt", "the gateway image", BOOKWORM, ("gateway",)),
        Target("ingest", "requirements/images/ingest.txt", "the ingest image", BOOKWORM, ("ingest",)),
        Target(
            "retention", "requirements/images/retention.txt", "the retention image", BOOKWORM, ("retention",)
        ),
        Target(
            "trainer",
            "requirements/images/trainer.txt",
            "the trainer image (torch: the CUDA build)",
            JAMMY,
            ("trainer",),
        ),
        Target(
            "renderer",
            "requirements/images/renderer.txt",
            "the renderer image (torch: the CUDA build)",
            JAMMY,
            ("renderer",),
        ),
    )
}


# --- the local packages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    name: str  # canonical
    path: str  # relative to the root
    dependencies: tuple[str, ...]
    optional: dict[str, tuple[str, ...]]
    build_requires: tuple[str, ...]

    def as_input(self) -> dict[str, object]:
        """What of the pyproject a lock depends on (descriptions and tool settings are not inputs)."""
        return {
            "path": self.path,
            "dependencies": list(self.dependencies),
            "optional": {extra: list(reqs) for extra, reqs in sorted(self.optional.items())},
            "build": list(self.build_requires),
        }


def local_packages(root: Path) -> dict[str, Package]:
    packages: dict[str, Package] = {}
    for pattern in PACKAGE_GLOBS:
        for pyproject in sorted(root.glob(f"{pattern}/pyproject.toml")):
            data = tomllib.loads(pyproject.read_text())
            project = data["project"]
            name = canonicalize_name(project["name"])
            packages[name] = Package(
                name=name,
                path=pyproject.parent.relative_to(root).as_posix(),
                dependencies=tuple(project.get("dependencies", [])),
                optional={k: tuple(v) for k, v in project.get("optional-dependencies", {}).items()},
                build_requires=tuple(data.get("build-system", {}).get("requires", [])),
            )
    return packages


def marker_environment() -> dict[str, str]:
    env: dict[str, str] = {key: str(value) for key, value in default_environment().items()}
    env.update(
        python_version=PYTHON,
        python_full_version=f"{PYTHON}.0",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        sys_platform="linux",
        platform_system="Linux",
        platform_machine="x86_64",
        os_name="posix",
    )
    return env


@dataclass
class Graph:
    """The local packages a lock covers (with the extras asked of each) and the third-party requirements
    they declare, each with the package that declares it."""

    local: dict[str, set[str]] = field(default_factory=dict)
    third_party: list[tuple[Requirement, str]] = field(default_factory=list)

    def add(self, requirement: Requirement, declared_by: str, packages: dict[str, Package]) -> None:
        if requirement.marker and not requirement.marker.evaluate(marker_environment() | {"extra": ""}):
            return
        name = canonicalize_name(requirement.name)
        if name not in packages:
            self.third_party.append((requirement, declared_by))
            return
        known = self.local.get(name)
        wanted = set(requirement.extras)
        if known is not None and wanted <= known:
            return
        self.local[name] = (known or set()) | wanted
        package = packages[name]
        for text in package.dependencies:
            self.add(Requirement(text), name, packages)
        for extra in sorted(wanted):
            for text in package.optional.get(extra, ()):
                self.add(Requirement(text), f"{name}[{extra}]", packages)


@dataclass(frozen=True)
class RequirementsFile:
    """A requirements file that is a lock's input: editable local packages, plain requirements, options."""

    editables: tuple[tuple[str, Requirement], ...]  # (path, requirement naming the package with its extras)
    requirements: tuple[Requirement, ...]
    lines: tuple[str, ...]  # every meaningful line, normalised, for the fingerprint


def read_requirements_file(root: Path, relative: str, packages: dict[str, Package]) -> RequirementsFile:
    by_path = {package.path: package for package in packages.values()}
    editables, requirements, lines = [], [], []
    for raw in (root / relative).read_text().splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        lines.append(" ".join(line.split()))
        if line.startswith("-e ") or line.startswith("--editable "):
            target = line.split(maxsplit=1)[1].strip()
            path, _, extras = target.partition("[")
            package = by_path.get(path.rstrip("/").removeprefix("./"))
            if package is None:
                raise SystemExit(f"{relative}: {target} is not a package of this repository")
            editables.append(
                (package.path, Requirement(f"{package.name}[{extras}" if extras else package.name))
            )
        elif not line.startswith("-"):
            requirements.append(Requirement(line))
    return RequirementsFile(tuple(editables), tuple(requirements), tuple(lines))


def read_constraints(root: Path) -> dict[str, Requirement]:
    constraints: dict[str, Requirement] = {}
    for raw in (root / CONSTRAINTS).read_text().splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            constraints[canonicalize_name(requirement.name)] = requirement
    return constraints


@dataclass(frozen=True)
class Inputs:
    graph: Graph
    requirements_file: RequirementsFile | None
    direct: tuple[Requirement, ...]  # third-party requirements the lock must hold besides the graph's
    local_paths: tuple[str, ...]

    def fingerprint(
        self,
        target: Target,
        packages: dict[str, Package],
        constraints: dict[str, Requirement],
        locked: set[str],
    ) -> str:
        relevant = locked | {canonicalize_name(r.name) for r, _ in self.graph.third_party}
        relevant |= {canonicalize_name(r.name) for r in self.direct}
        data = {
            "target": target.name,
            "python": PYTHON,
            "platform": target.platform,
            "requirements": list(self.requirements_file.lines) if self.requirements_file else [],
            "direct": sorted(str(r) for r in self.direct),
            "packages": {name: packages[name].as_input() for name in sorted(self.graph.local)},
            "constraints": sorted(str(c) for n, c in constraints.items() if n in relevant)
            if target.constrained
            else [],
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def inputs_of(target: Target, root: Path, packages: dict[str, Package]) -> Inputs:
    graph = Graph()
    requirements_file = None
    direct: list[Requirement] = []
    if target.requirements:
        requirements_file = read_requirements_file(root, target.requirements, packages)
        for _, requirement in requirements_file.editables:
            graph.add(requirement, target.requirements, packages)
        direct.extend(requirements_file.requirements)
    elif target.build:
        texts = {text for package in packages.values() for text in package.build_requires} | {"pip"}
        direct.extend(Requirement(text) for text in sorted(texts))
    else:
        for service in target.services:
            package = next(p for p in packages.values() if p.path == f"services/{service}")
            graph.add(Requirement(package.name), f"services/{service}", packages)
    paths = tuple(sorted(packages[name].path for name in graph.local))
    return Inputs(graph, requirements_file, tuple(direct), paths)


# --- reading a lock ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    name: str
    version: str
    hashes: tuple[str, ...]


def read_lock(text: str) -> tuple[dict[str, Entry], list[str]]:
    """The entries of a lock and what is wrong with its lines."""
    entries: dict[str, Entry] = {}
    problems: list[str] = []
    logical = re.sub(r"\\\n", " ", text)
    for raw in logical.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith("-"):
            problems.append(f"option or editable line: {line[:80]}")
            continue
        requirement_text, _, rest = line.partition(" --")
        requirement_text = requirement_text.strip()
        options = f"--{rest}".split() if rest else []
        try:
            requirement = Requirement(requirement_text)
        except InvalidRequirement:
            problems.append(f"unreadable line: {line[:80]}")
            continue
        specifiers = list(requirement.specifier)
        name = canonicalize_name(requirement.name)
        if (
            requirement.url
            or len(specifiers) != 1
            or specifiers[0].operator != "=="
            or "*" in specifiers[0].version
        ):
            problems.append(f"{name}: not pinned with == (got {requirement_text!r})")
            continue
        matches = [HASH.fullmatch(option) for option in options]
        hashes = tuple(match.group(1) for match in matches if match)
        if len(hashes) != len(options):
            problems.append(f"{name}: something other than --hash=sha256:<64 hex> after the pin")
        if not hashes:
            problems.append(f"{name}: no --hash=sha256 entry")
        if name in entries:
            problems.append(f"{name}: pinned twice")
        entries[name] = Entry(name, specifiers[0].version, hashes)
    return entries, problems


# --- check ------------------------------------------------------------------------------------------------


def check_target(
    target: Target, root: Path, packages: dict[str, Package], constraints: dict[str, Requirement]
) -> list[str]:
    path = root / target.lock
    if not path.is_file():
        return [f"{target.lock}: missing (make lock)"]
    text = path.read_text()
    entries, problems = read_lock(text)
    problems = [f"{target.lock}: {problem}" for problem in problems]
    inputs = inputs_of(target, root, packages)
    for name in inputs.graph.local:
        if name in entries:
            problems.append(f"{target.lock}: pins {name}, a package of this repository (use --no-deps)")
    wanted = [(r, by) for r, by in inputs.graph.third_party] + [
        (r, target.requirements or "pip") for r in inputs.direct
    ]
    environment = marker_environment() | {"extra": ""}
    for requirement, declared_by in wanted:
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        entry = entries.get(name)
        if entry is None:
            problems.append(f"{target.lock}: lacks {requirement} (declared by {declared_by}); make lock")
        elif not requirement.specifier.contains(Version(entry.version), prereleases=True):
            problems.append(
                f"{target.lock}: {name}=={entry.version} does not satisfy {requirement} (declared by "
                f"{declared_by}); run `make lock`"
            )
    if target.constrained:
        for name, entry in entries.items():
            constraint = constraints.get(name)
            if constraint is not None and not constraint.specifier.contains(
                Version(entry.version), prereleases=True
            ):
                pin = f"{name}=={entry.version}"
                problems.append(f"{target.lock}: {pin} but {CONSTRAINTS} says {constraint}")
    recorded = FINGERPRINT.search(text)
    expected = inputs.fingerprint(target, packages, constraints, set(entries))
    if recorded is None:
        problems.append(f"{target.lock}: no inputs-sha256 line in its header")
    elif recorded.group(1) != expected:
        problems.append(f"{target.lock}: its inputs changed since it was compiled; run `make lock`")
    return problems


def check(root: Path = ROOT, names: list[str] | None = None) -> list[str]:
    packages = local_packages(root)
    constraints = read_constraints(root)
    problems: list[str] = []
    for name in names or list(TARGETS):
        problems.extend(check_target(TARGETS[name], root, packages, constraints))
    return problems


# --- compile ----------------------------------------------------------------------------------------------


def find_uv() -> str:
    for candidate in (os.environ.get("UV"), str(ROOT / ".venv-tools" / "bin" / "uv"), shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise SystemExit("uv not found: run `make tools` (requirements/tools.txt pins it) or set UV=/path/to/uv")


def find_links() -> str:
    """Where pip finds the torch CPU wheel (this machine's and CI's pip configuration)."""
    configured = (
        os.environ.get("LIKENESS_TORCH_FIND_LINKS") or os.environ.get("PIP_FIND_LINKS") or "/opt/wheels"
    )
    return configured.split()[0]


def header(target: Target, inputs: Inputs, fingerprint: str) -> str:
    sources = [target.requirements] if target.requirements else []
    sources += [f"{path}/pyproject.toml" for path in inputs.local_paths]
    if target.build:
        sources.append("the build-system.requires of every pyproject.toml")
    if target.constrained:
        sources.append(CONSTRAINTS)
    return (
        "# Generated by scripts/lock.py (make lock); do not edit. Every distribution is pinned with its\n"
        "# hashes: install with --require-hashes.\n"
        f"# Lock of {target.description}: CPython {PYTHON}, {target.platform}.\n"
        + "".join(f"# {line}\n" for line in textwrap.wrap(f"Inputs: {', '.join(sources)}.", 100))
        + f"# inputs-sha256: {fingerprint}\n"
    )


def compile_target(target: Target, out: Path, uv: str, upgrade: bool, root: Path = ROOT) -> None:
    """Compiles one lock into `out`, keeping the pins of the committed lock unless `upgrade`."""
    packages = local_packages(root)
    constraints = read_constraints(root)
    inputs = inputs_of(target, root, packages)
    with tempfile.TemporaryDirectory(prefix="likeness-lock-") as tmp:
        work = Path(tmp) / "lock.txt"
        committed = root / target.lock
        if committed.is_file() and not upgrade:
            work.write_text(committed.read_text())  # uv keeps the pins it finds in its output file
        command = [
            uv,
            "pip",
            "compile",
            "--quiet",
            "--no-config",
            "--generate-hashes",
            "--no-header",
            "--python-version",
            PYTHON,
            "--python-platform",
            target.platform,
            "--output-file",
            str(work),
        ]
        stdin = None
        if target.requirements:
            command.append(target.requirements)
        else:
            # On standard input, so no temporary path shows in the annotations.
            lines = [f"./{path}" for path in inputs.local_paths] + [str(r) for r in inputs.direct]
            stdin = "\n".join(lines) + "\n"
            command.append("-")
        if target.constrained:
            command += ["--constraint", CONSTRAINTS]
        for name in sorted(inputs.graph.local):
            command += ["--no-emit-package", name]
        if target.find_links:
            command += ["--find-links", find_links()]
        if upgrade:
            command.append("--upgrade")
        subprocess.run(command, cwd=root, check=True, input=stdin, text=True)
        body = work.read_text()
        # uv lists the packages it left out as comments at the top; the header says where they come from.
        body = "".join(
            line
            for line in body.splitlines(keepends=True)
            if not (line.startswith("# ") and line[2:].strip() in inputs.graph.local)
        )
        entries, problems = read_lock(body)
        if problems:
            raise SystemExit(f"{target.lock}: uv wrote an unexpected lock: {problems}")
        fingerprint = inputs.fingerprint(target, packages, constraints, set(entries))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(header(target, inputs, fingerprint) + body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    compile_parser = commands.add_parser("compile", help="regenerate locks with uv")
    compile_parser.add_argument(
        "--upgrade", action="store_true", help="move unpinned dependencies to their newest"
    )
    choices = ", ".join(TARGETS)
    compile_parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"some of: {choices}")
    commands.add_parser("check", help="offline consistency check of every lock")
    commands.add_parser("verify", help="recompile every lock into a temporary directory and diff")
    args = parser.parse_args(argv)

    if args.command == "check":
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print(f"{len(TARGETS)} locks consistent with their inputs")
        return 1 if problems else 0

    unknown = sorted(set(getattr(args, "targets", [])) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}")
    uv = find_uv()
    if args.command == "compile":
        for name in args.targets or list(TARGETS):
            target = TARGETS[name]
            compile_target(target, ROOT / target.lock, uv, args.upgrade)
            print(f"{target.lock}: {len(read_lock((ROOT / target.lock).read_text())[0])} distributions")
        return 0

    differences = 0
    with tempfile.TemporaryDirectory(prefix="likeness-verify-") as tmp:
        for target in TARGETS.values():
            fresh = Path(tmp) / target.name
            compile_target(target, fresh, uv, upgrade=False)
            committed = (ROOT / target.lock).read_text() if (ROOT / target.lock).is_file() else ""
            diff = list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    fresh.read_text().splitlines(keepends=True),
                    target.lock,
                    f"{target.lock} (recompiled)",
                )
            )
            if diff:
                differences += 1
                sys.stdout.writelines(diff)
    print(
        f"{differences} of {len(TARGETS)} locks differ from a fresh compile"
        if differences
        else f"{len(TARGETS)} locks match a fresh compile"
    )
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
