"""Pytest plugin (loaded by the root conftest.py): the real NATS, S3 and Vault-API servers for tests, and
the two test tiers.

    def test_something(infra: Infra, infra_env: dict[str, str]) -> None: ...

The servers start on first use, once per session, in a pytest tmp dir, and stop at the end of the
session. They never outlive it: stopped at session end, at interpreter exit (atexit, also after Ctrl-C),
and killed by the kernel if pytest itself is killed (see `ManagedProcess.die_with_parent`).

Tiers. Every test that requests a server fixture is marked `integration` here, by fixture, never by hand
(a hand-written `integration` marker is an error): `infra`, everything built on it (`infra_env`, `stack`,
`settings`, ...), and `server_process`, which a test (or fixture) requests when it starts a server of its
own: a subprocess, an in-process gRPC or HTTP server, uvicorn, a `ManagedProcess`. Every other test is a
unit test. `pytest --tier unit` runs only those, and no server may start while they run: the `infra` and
`server_process` fixtures, `ManagedProcess.start` (here and in child processes, through the inherited
`LIKENESS_FORBID_SERVERS`), `listen()` on any Python socket, gRPC's `add_insecure_port` and
`add_secure_port` (its C core binds without Python's socket module) and `subprocess` starts of the known
server programs all raise `ServerStartForbidden`, and a test whose refusal was caught and swallowed fails
anyway. `make test-unit` also runs that tier in a network namespace of its own where it can (Linux:
`unshare`), so that a server started some other way (a child process that is not a known server program,
native code) cannot be reached, nor can anything running outside. `pytest --tier integration` runs the rest.
"""

from __future__ import annotations

import atexit
import errno
import importlib
import os
import shlex
import socket
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from likeness import ids
from likeness.bus import Bus
from likeness.consent import BY_SUBJECT, HEADSHOTS, consent_key
from likeness.jobs import QueueWorker
from likeness.provisioner import provision_nats
from likeness.provisioning import CONSENTS_BUCKET, BucketSpec, ConsumerSpec, TenantQueues
from likeness.timeutil import now_timestamp
from likeness.v1 import retention_pb2
from likeness_dev.dev_pki import DevCertificateAuthority
from likeness_dev.infra import DEVELOPMENT, Infra, start_infra
from likeness_dev.procs import (
    FORBID_SERVERS_ENV,
    ServerStartForbidden,
    refuse_server_start,
    servers_forbidden,
    take_refused_starts,
)

INTEGRATION = "integration"
UNIT_TIER = "unit"
INTEGRATION_TIER = "integration"
#: A test that requests any of these (directly or through other fixtures) is an integration test.
SERVER_FIXTURES = frozenset({"infra", "server_process"})

# Programs that are servers whatever their arguments, and programs that are one with a subcommand.
_SERVER_PROGRAMS = frozenset(
    {"nats-server", "weed", "prometheus", "uvicorn", "gunicorn", "hypercorn", "etcd", "kube-apiserver"}
)
_SERVER_SUBCOMMANDS = {"bao": "server", "vault": "server", "minio": "server"}
# `python -m <module>` that starts a server: our services, and uvicorn.
_SERVER_MODULES = frozenset({"gateway", "ingest", "trainer", "renderer", "retention", "uvicorn"})

_TIER_PLUGIN_NAME = "likeness-test-tiers"
_tier_key = pytest.StashKey[str | None]()
_deselected_by_tier_key = pytest.StashKey[int]()
_WORKER_OUTPUT_KEY = "likeness_deselected_by_tier"
_running: list[Infra] = []
_guard_installed = False


def _stop_all() -> None:
    while _running:
        _running.pop().stop(grace=5.0)


atexit.register(_stop_all)


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """NATS JetStream, SeaweedFS S3 and OpenBao (transit mounted), running, with one user per identity,
    and provisioned as `likeness bootstrap` does (streams, buckets, consumers, the versioned bucket).
    `infra.endpoints` hold an unrestricted admin's credentials; `infra.settings_of("ingest")` an
    identity's."""
    refuse_server_start("the infra fixture (NATS, S3 and OpenBao)")
    started = Infra(tmp_path_factory.mktemp("infra"))
    _running.append(started)
    try:
        started.start()
        yield started
    finally:
        started.stop()
        if started in _running:
            _running.remove(started)


@pytest.fixture(scope="session")
def infra_env(infra: Infra) -> dict[str, str]:
    """The LIKENESS_* settings of the running servers (a plain dict: pass it as `env=` or to settings)."""
    return infra.endpoints.as_env()


@pytest.fixture(scope="session")
def server_process() -> None:
    """Requested by a test or fixture that starts a server of its own (a subprocess, an in-process gRPC
    or HTTP server, uvicorn, a ManagedProcess): it makes every test that uses it an integration test.
    Session-scoped so that fixtures of any scope may request it; it starts nothing itself."""
    refuse_server_start("the server_process fixture")


# Mutual TLS (issue 14, S1): certificates for tests' own gRPC servers and channels (`likeness_dev.dev_pki`).


@pytest.fixture(scope="session")
def dev_ca() -> DevCertificateAuthority:
    """The tests' CA: `dev_ca.issue("retention").material` for a server, `.issue("gateway")` for a caller."""
    return DevCertificateAuthority.create("likeness test CA")


@pytest.fixture(scope="session")
def foreign_ca() -> DevCertificateAuthority:
    """Another CA, trusted by nobody: its certificates must be refused everywhere."""
    return DevCertificateAuthority.create("foreign CA")


# Provisioning (issue 14, part P): services bind, never create; a test that needs a private bucket or
# consumer makes it first, as the admin, with the same code `likeness bootstrap` runs.


#: A test's private bucket is small: JetStream reserves every bucket's bound from the server's storage
#: when it is made, and a session makes hundreds.
TEST_BUCKET_BYTES = 8 * 1024 * 1024


async def provisioned_kv(bus: Bus, name: str) -> KeyValue:
    """A private KV bucket for a test (created as `likeness bootstrap` would, then bound)."""
    await provision_for_test(bus.js, [BucketSpec(name)])
    return await bus.kv(name)


async def provision_for_test(
    js: JetStreamContext, buckets: Iterable[BucketSpec] = (), consumers: Iterable[ConsumerSpec] = ()
) -> None:
    """Private buckets and durable consumers for a test (a prefixed retention, a gateway app of its own)."""
    small = [replace(spec, max_bytes=TEST_BUCKET_BYTES) for spec in buckets]
    await provision_nats(js, streams=(), buckets=small, consumers=consumers)


async def private_tenant_queues(
    js: JetStreamContext, stream: str, worker: QueueWorker[Any, Any], tenants: Iterable[str]
) -> TenantQueues:
    """A test's own work queue (subjects `<stream, lower case>.<tenant>.<subject>`) split into tenant
    consumers like the real ones, given to `worker`, with the tenants' consumers made as the serve role makes
    them (`likeness.tenant_queues`), with the worker's AckWait and MaxDeliver."""
    queues = TenantQueues("test", stream, prioritized=False, prefix=stream.lower())
    worker.queues = queues
    for tenant in tenants:
        spec = queues.consumer(
            tenant, None, ack_wait=worker.ack_wait, max_deliver=worker.consumer_max_deliver
        )
        await js.add_consumer(stream, spec.config())
    return queues


# ------------------------------------------------------------------------------------------------ options


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--tier",
        choices=[UNIT_TIER, INTEGRATION_TIER],
        default=None,
        help=(
            "unit: only the tests that request no server fixture, and starting a server fails them "
            "(make test-unit); integration: only the others (make test-integration). Default: all."
        ),
    )


#: What every test runs as: development (the settings' default is production, which refuses the dev
#: servers' plaintext endpoints and development secrets). A test of production passes `env="production"`.
TEST_ENVIRONMENT = {"LIKENESS_ENV": DEVELOPMENT}


def pytest_configure(config: pytest.Config) -> None:
    # Said explicitly, in the environment, so that settings read here and every process a test starts
    # (which inherits it) run as development; a test of the default removes it from its child's environment.
    os.environ.update(TEST_ENVIRONMENT)
    config.addinivalue_line(
        "markers",
        f"{INTEGRATION}: starts or uses a real server; applied by fixture "
        f"({', '.join(sorted(SERVER_FIXTURES))} and everything built on them), never by hand",
    )
    tier: str | None = config.getoption("tier")
    if tier is None and servers_forbidden():
        tier = UNIT_TIER  # LIKENESS_FORBID_SERVERS set by hand: the only tier that can run here
    if tier == INTEGRATION_TIER and servers_forbidden():
        raise pytest.UsageError(f"--tier {INTEGRATION_TIER}: {FORBID_SERVERS_ENV} forbids every server")
    config.stash[_tier_key] = tier
    config.stash[_deselected_by_tier_key] = 0
    # The tier's hooks live on an object of their own: this module already implements
    # pytest_collection_modifyitems (first, for the marking) and the tier selection must come last.
    if not config.pluginmanager.has_plugin(_TIER_PLUGIN_NAME):
        config.pluginmanager.register(_TierSelection(), _TIER_PLUGIN_NAME)
    if tier == UNIT_TIER:
        # In the environment, so that ManagedProcess refuses here and in every child process too.
        os.environ[FORBID_SERVERS_ENV] = "1"
        _install_guard()


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    tier = config.stash.get(_tier_key, None)
    if tier is None:
        return None
    if tier == INTEGRATION_TIER:
        return [f"test tier: {INTEGRATION_TIER} (only tests that start or use a server)"]
    network = (
        "loopback unreachable (a network namespace of its own)"
        if not _loopback_reachable()
        else "loopback reachable (no network namespace: the in-process guard only)"
    )
    return [f"test tier: {UNIT_TIER} (starting a server fails the test; {network})"]


# ------------------------------------------------------------------------------------------------- tiers


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a server fixture `integration`, before `-m` and conftests look."""
    by_hand = []
    for item in items:
        if item.get_closest_marker(INTEGRATION) is not None:
            by_hand.append(item.nodeid)
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(INTEGRATION)
    if by_hand:
        more = f"\n  ... and {len(by_hand) - 20} more" if len(by_hand) > 20 else ""
        raise pytest.UsageError(
            f"the `{INTEGRATION}` marker comes from fixtures, not by hand: remove it from these tests (a test"
            " that starts or uses a server requests `infra`, a fixture built on it, or `server_process`):"
            "\n  " + "\n  ".join(by_hand[:20]) + more
        )


class _TierSelection:
    """Keeps only the chosen tier's tests, after every other selection (-k, -m, conftests) is done, so
    that "nothing left" can tell an empty tier (the other tier has the tests) from an empty selection."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        tier = config.stash.get(_tier_key, None)
        if tier is None:
            return
        want_integration = tier == INTEGRATION_TIER
        kept = [item for item in items if _is_integration(item) == want_integration]
        dropped = [item for item in items if _is_integration(item) != want_integration]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
        config.stash[_deselected_by_tier_key] = len(dropped)
        if hasattr(config, "workeroutput"):  # a pytest-xdist worker: tell the controller (testnodedown)
            config.workeroutput[_WORKER_OUTPUT_KEY] = len(dropped)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """pytest-xdist's controller, as each worker ends: how many tests its tier left to the other."""
        deselected = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT_KEY, 0)
        config = node.config
        config.stash[_deselected_by_tier_key] = max(config.stash.get(_deselected_by_tier_key, 0), deselected)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        refused = take_refused_starts()
        if refused and not report.failed:
            # The refusal was caught by the code under test (or in a thread): the test still fails.
            report.outcome = "failed"
            report.longrepr = "\n".join(f"{ServerStartForbidden.__name__}: {message}" for message in refused)
        return report

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # `make test` runs both tiers with the same arguments: a selection that only has tests of the
        # other tier is not an error here (that run has them); a selection of nothing at all still is.
        if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and session.config.stash.get(
            _deselected_by_tier_key, 0
        ):
            session.exitstatus = pytest.ExitCode.OK


def _is_integration(item: pytest.Item) -> bool:
    return item.get_closest_marker(INTEGRATION) is not None


# ------------------------------------------------------------------------------------------------- guard


def _install_guard() -> None:
    """Make every way of starting a server in this process refuse (while servers are forbidden)."""
    global _guard_installed
    if _guard_installed:
        return
    _guard_installed = True
    original_listen = socket.socket.listen

    def listen(self: socket.socket, *backlog: int) -> None:
        refuse_server_start(f"listen() on a socket bound to {_address_of(self)}")
        original_listen(self, *backlog)

    socket.socket.listen = listen  # type: ignore[method-assign,assignment]
    _guard_grpc()
    # Audit hooks cannot be removed; this one does nothing unless servers are forbidden.
    sys.addaudithook(_audit_subprocesses)


def _guard_grpc() -> None:
    """gRPC's C core binds and listens without Python's socket module: guard where servers get ports."""
    try:
        sync_server = importlib.import_module("grpc._server")
        aio_server = importlib.import_module("grpc.aio._server")
    except ImportError:
        return  # no gRPC installed: nothing to guard
    for server_class in (sync_server._Server, aio_server.Server):
        for name in ("add_insecure_port", "add_secure_port"):
            # No getattr default: if gRPC renames these, the guard must break loudly, not go quiet.
            setattr(server_class, name, _refusing_port(name, getattr(server_class, name)))


def _refusing_port(name: str, original: Callable[..., int]) -> Callable[..., int]:
    def add_port(self: Any, address: str, *args: Any, **kwargs: Any) -> int:
        refuse_server_start(f"gRPC server {name}({address!r})")
        return original(self, address, *args, **kwargs)

    return add_port


def _audit_subprocesses(event: str, args: tuple[Any, ...]) -> None:
    if event != "subprocess.Popen" or not servers_forbidden():
        return
    command = _server_command(args[1])
    if command is not None:
        refuse_server_start(f"running the server {command!r}")


def _server_command(argv: object) -> str | None:
    """The command line, if it starts one of the known servers; else None."""
    try:
        if isinstance(argv, str | bytes | os.PathLike):
            words = shlex.split(os.fsdecode(argv)) if isinstance(argv, str | bytes) else [os.fsdecode(argv)]
        elif isinstance(argv, Sequence):
            words = [os.fsdecode(word) for word in argv]
        else:
            return None
    except (TypeError, ValueError):  # arguments Popen itself will refuse: not for an audit hook to break
        return None
    if not words:
        return None
    program, rest = Path(words[0]).name, words[1:]
    if program in _SERVER_PROGRAMS:
        return shlex.join(words)
    if program in _SERVER_SUBCOMMANDS and _SERVER_SUBCOMMANDS[program] in rest:
        return shlex.join(words)
    if program.startswith("python") and "-m" in rest[:-1] and rest[rest.index("-m") + 1] in _SERVER_MODULES:
        return shlex.join(words)
    return None


def _address_of(sock: socket.socket) -> str:
    try:
        return repr(sock.getsockname())
    except OSError:
        return "(nothing)"


def _loopback_reachable() -> bool:
    """False in a network namespace of our own (loopback down): connecting gives 'network unreachable'."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", 1)) != errno.ENETUNREACH


__all__ = [
    "SERVER_FIXTURES",
    "ServerStartForbidden",
    "infra",
    "infra_env",
    "provision_for_test",
    "provisioned_kv",
    "server_process",
    "start_infra",
]


# ------------------------------------------------------------------------------------------------ consent


async def grant_for_test(bus: Bus, tenant: str, subject_id: str, purpose: str = HEADSHOTS) -> None:
    """A live consent grant of `purpose`, written as retention writes it (`retention.consents`), for a test
    that runs a worker without retention: every worker checks the grant when it starts a job."""
    grant = retention_pb2.ConsentGrant(
        id=ids.new_id("cns"),
        purpose=purpose,
        policy_version="test",
        granted_at=now_timestamp(),
        granted_by=BY_SUBJECT,
    )
    record = retention_pb2.SubjectConsents(tenant=tenant, subject_id=subject_id, grants=[grant])
    kv = await bus.kv(CONSENTS_BUCKET)
    await kv.put(consent_key(tenant, subject_id), record.SerializeToString())
