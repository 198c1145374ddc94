"""`likeness_cli` is installed with the client, next to no service: it may import the client and the
libraries, never a service's package (gateway, ingest, trainer, renderer, retention...) nor the dev kit.
Read from the source (every `import`, `from ... import` and `import_module("...")`, at any depth), so an
import inside a function is caught as well as one at the top."""

from __future__ import annotations

import ast
import itertools
import tomllib
from pathlib import Path

import likeness_cli

PACKAGE = Path(likeness_cli.__file__).parent
REPO = PACKAGE.parent.parent
SERVICE_PACKAGES = {path.name for path in (REPO / "services").iterdir() if (path / path.name).is_dir()}
FORBIDDEN = SERVICE_PACKAGES | {"likeness_dev"}


def imported_modules(source: str) -> set[str]:
    """Every module a piece of Python source imports, by its full dotted name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def forbidden_imports(source: str) -> set[str]:
    return {name for name in imported_modules(source) if name.split(".")[0] in FORBIDDEN}


def test_the_service_packages_are_known() -> None:
    assert {"gateway", "ingest", "trainer", "renderer", "retention"} <= SERVICE_PACKAGES


def test_the_check_sees_every_kind_of_import() -> None:
    source = """
import os
from likeness import receipts
def policy():
    from retention.config import RetentionSettings
    import gateway.app
    importlib.import_module("likeness_dev.stack")
"""
    assert forbidden_imports(source) == {"retention.config", "gateway.app", "likeness_dev.stack"}


def test_no_module_of_the_cli_imports_a_service_or_the_dev_kit() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 5
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(found)
        for path in modules
        if (found := forbidden_imports(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_cli_package_depends_on_no_service_nor_the_dev_kit() -> None:
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {}).values()
    requirements = [*project["dependencies"], *itertools.chain.from_iterable(extras)]
    names = {requirement.split("[")[0].split(">")[0].split("=")[0].strip() for requirement in requirements}
    forbidden = {f"likeness-{name}" for name in SERVICE_PACKAGES} | {"likeness-devkit"}
    assert names & forbidden == set()
