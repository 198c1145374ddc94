"""The test tiers of likeness_dev.testing: the `integration` marker comes from fixtures only, and in the
unit tier every way of starting a server fails the test that tried, even where the refusal is swallowed.

Each case runs a small test file in a pytest of its own (a subprocess, so its guard and environment are
its own) and reads the outcome of every test from its JUnit XML report. Those pytests load only the
plugins they need: the installed ones that load themselves (hypothesis, schemathesis) take seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from likeness_dev.procs import FORBID_SERVERS_ENV

INI = """\
[pytest]
addopts = -p likeness_dev.testing -p pytest_asyncio.plugin -p no:cacheprovider
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

# Every way a test could start a server, each of which the unit tier must fail; and what unit tests do
# that the guard must leave alone.
SERVER_STARTS = """
import asyncio
import http.server
import socket
import subprocess
import sys
from concurrent import futures

import grpc
import pytest

from likeness_dev.ports import free_port
from likeness_dev.procs import ManagedProcess, find_binary

CHILD_STARTS_A_PROCESS = (
    "import pathlib, sys; from likeness_dev.procs import ManagedProcess; "
    "process = ManagedProcess('child', [sys.executable, '-c', 'pass'], pathlib.Path(sys.argv[1])); "
    "process.start(); process.stop()"
)


def test_listen():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()


def test_listen_with_the_refusal_swallowed():
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
    except Exception:
        pass


def test_http_server():
    http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler).server_close()


async def test_asyncio_server():
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    server.close()


async def test_grpc_aio_server():
    server = grpc.aio.server()
    server.add_insecure_port("127.0.0.1:0")
    await server.stop(None)


def test_grpc_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_insecure_port("127.0.0.1:0")
    server.stop(None)


def test_managed_process(tmp_path):
    process = ManagedProcess("sleeper", [sys.executable, "-c", "pass"], tmp_path / "sleeper.log")
    process.start()
    process.stop()


def test_managed_process_in_a_child_process(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", CHILD_STARTS_A_PROCESS, str(tmp_path / "child.log")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_server_program():
    subprocess.run([find_binary("nats-server"), "--version"], check=True, capture_output=True)


def test_infra_requested_at_run_time(request):
    request.getfixturevalue("infra")


@pytest.fixture
def built_on_infra(infra_env):
    return infra_env


@pytest.fixture(scope="module")
def own_server(server_process):
    return "a server of its own"


def test_uses_infra(infra):
    pass


def test_uses_a_fixture_built_on_infra(built_on_infra):
    pass


def test_uses_a_fixture_that_starts_its_own_server(own_server):
    pass


async def test_what_unit_tests_do_is_allowed(tmp_path):
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # a bound socket that does not listen serves nothing
    assert free_port() > 0
    await asyncio.sleep(0)
"""

REFUSED = {
    "test_listen",
    "test_listen_with_the_refusal_swallowed",
    "test_http_server",
    "test_asyncio_server",
    "test_grpc_aio_server",
    "test_grpc_server",
    "test_managed_process",
    "test_managed_process_in_a_child_process",
    "test_server_program",
    "test_infra_requested_at_run_time",
}
#: Marked `integration` by their fixtures: never in the unit tier.
INTEGRATION = {
    "test_uses_infra",
    "test_uses_a_fixture_built_on_infra",
    "test_uses_a_fixture_that_starts_its_own_server",
}

BY_HAND = """
import pytest


@pytest.mark.integration
def test_marked_by_hand():
    pass
"""


@dataclass
class Run:
    returncode: int
    output: str
    outcomes: dict[str, tuple[str, str]]  # test name -> (passed | failed | error | skipped, report text)


def _pytest(tmp_path: Path, source: str, *args: str, env: dict[str, str] | None = None) -> Run:
    (tmp_path / "pytest.ini").write_text(INI)
    (tmp_path / "test_inner.py").write_text(source)
    report = tmp_path / "report.xml"
    report.unlink(missing_ok=True)
    environment = {key: value for key, value in (env or os.environ).items() if not key.startswith("PYTEST_")}
    environment.pop(FORBID_SERVERS_ENV, None)  # the tier is the inner pytest's own choice
    environment["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", *args],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    outcomes = {}
    if report.exists():
        for case in ET.parse(report).iter("testcase"):  # noqa: S314 - our own pytest's report
            verdicts = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
            text = "".join(ET.tostring(child, encoding="unicode") for child in case)
            outcomes[case.attrib["name"]] = (verdicts[0] if verdicts else "passed", text)
    return Run(done.returncode, done.stdout + done.stderr, outcomes)


def test_the_unit_tier_fails_every_test_that_starts_a_server(tmp_path: Path) -> None:
    run = _pytest(tmp_path, SERVER_STARTS, "--tier", "unit")
    assert run.returncode == 1, run.output
    assert run.outcomes.pop("test_what_unit_tests_do_is_allowed")[0] == "passed", run.output
    # Every other test ran and was failed, but the integration tests, which are not in this tier at all.
    assert set(run.outcomes) == REFUSED, run.output
    for name, (verdict, report) in run.outcomes.items():
        assert verdict in ("failure", "error"), f"{name} was not failed:\n{run.output}"
        assert "ServerStartForbidden" in report, f"{name} failed for another reason:\n{report}"


def test_the_same_tests_pass_outside_the_unit_tier(tmp_path: Path, server_process: None) -> None:
    # The control: what failed them above is the guard, not the tests (the real servers are left out).
    run = _pytest(tmp_path, SERVER_STARTS, "-m", "not integration", "-k", "not infra")
    assert run.returncode == 0, run.output
    assert set(run.outcomes) == REFUSED - {"test_infra_requested_at_run_time"} | {
        "test_what_unit_tests_do_is_allowed"
    }
    assert {verdict for verdict, _ in run.outcomes.values()} == {"passed"}, run.output


def test_integration_comes_from_server_fixtures(tmp_path: Path) -> None:
    run = _pytest(tmp_path, SERVER_STARTS, "--collect-only", "-m", "integration")
    assert run.returncode == 0, run.output
    collected = {line.split("::")[-1] for line in run.output.splitlines() if "::" in line}
    assert collected == INTEGRATION, run.output


def test_a_hand_written_integration_marker_is_an_error(tmp_path: Path) -> None:
    run = _pytest(tmp_path, BY_HAND, "--collect-only")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.output
    assert "test_inner.py::test_marked_by_hand" in run.output
    assert "comes from fixtures, not by hand" in run.output


def test_a_tier_with_nothing_selected_passes_only_if_the_other_tier_has_tests(tmp_path: Path) -> None:
    # `make test` runs both tiers with the same arguments: `-k uses` selects integration tests only.
    only_the_other_tier = _pytest(tmp_path, SERVER_STARTS, "--collect-only", "--tier", "unit", "-k", "uses")
    assert only_the_other_tier.returncode == 0, only_the_other_tier.output
    assert "no tests collected" in only_the_other_tier.output
    nothing_at_all = _pytest(
        tmp_path, SERVER_STARTS, "--collect-only", "--tier", "unit", "-k", "no_such_test"
    )
    assert nothing_at_all.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, nothing_at_all.output
