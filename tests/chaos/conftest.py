"""Fault and load tests on a dev stack of their own (loopback only): workers killed, servers restarted,
paused or stopped, twenty journeys at once, then a scan for anything that leaked.

Markers: every test here is `chaos`; the bounded subset CI runs with `make test` is also `chaos_ci`.
Run without `-m`, pytest deselects the `chaos` tests that are not `chaos_ci` (so `make test` stays
bounded); `pytest -m chaos tests/chaos` (`make test-chaos`) runs them all. The leak scans run last.

The stack is private to these tests (its own NATS, S3 and OpenBao): they stop and restart its servers,
which must not disturb the session's shared `infra`. Every test leaves it whole for the next one.

The bigger stack (`cluster_stack`, `replicated_stack`; one test module each, stopped after it): NATS as a
3-node JetStream cluster with every stream and bucket at 3 replicas, OpenBao on persistent storage that
the stack initialised and unseals, and (replicated_stack) two processes of every service.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats.errors
import nats.js.errors
import pytest

from likeness.bus import EVENTS_STREAM, Bus, event_nats_subject
from likeness.config import CommonSettings
from likeness.object_names import subject_prefix
from likeness.store import ObjectStore, StoredObject
from likeness_dev.infra import Infra
from likeness_dev.journey import GatewayClient
from likeness_dev.load import LoadOutcome
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_dev.tokens import DEV_TENANT

T = TypeVar("T")
CHAOS = "chaos"
CHAOS_CI = "chaos_ci"
#: JetStream redelivers a killed worker's job this long after its last heartbeat.
WORKER_ACK_WAIT_SECONDS = "4"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.option.markexpr:
        # No marker expression given (plain `make test`): only the CI subset of the chaos tests.
        chosen = [item for item in items if not _is_heavy_chaos(item)]
        dropped = [item for item in items if _is_heavy_chaos(item)]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = chosen
    # The leak scans look at what the other tests left behind: they go last.
    items.sort(key=lambda item: item.get_closest_marker("leak_scan") is not None)


def _is_heavy_chaos(item: pytest.Item) -> bool:
    return item.get_closest_marker(CHAOS) is not None and item.get_closest_marker(CHAOS_CI) is None


@dataclass
class Ledger:
    """What the chaos tests handed the stack, for the leak scans at the end: the photos' bytes, the
    images that came out, and every identifier and token that must not show up in logs or labels."""

    photos: dict[str, bytes] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    needles: dict[str, str] = field(default_factory=dict)

    def add_photos(self, photos: list[tuple[str, bytes]]) -> None:
        self.photos.update(photos)

    def add_subject(self, subject_id: str) -> None:
        self.needles[f"subject id {subject_id}"] = subject_id

    def add_token(self, token: str) -> None:
        self.needles[f"a bearer token (…{token[-6:]})"] = token

    def add_external_ref(self, ref: str) -> None:
        self.needles[f"external ref {ref}"] = ref


@pytest.fixture(scope="session")
def ledger() -> Ledger:
    return Ledger()


@contextmanager
def _private_stack(
    root: Path, *, nats_cluster_size: int = 1, persistent_vault: bool = False, replicas: int = 1
) -> Iterator[DevStack]:
    """All servers and services under `root`, stopped (and its files left to pytest's tmp cleanup) after."""
    infra = Infra(
        root / "infra",
        nats_cluster_size=nats_cluster_size,
        persistent_vault=persistent_vault,
        # Three JetStream servers electing their meta leader, on 2 busy cores, take longer than one.
        startup_timeout=90.0 if nats_cluster_size > 1 else 30.0,
    )
    infra.start()
    worker_env = {
        "LIKENESS_ACK_WAIT_SECONDS": WORKER_ACK_WAIT_SECONDS,
        "LIKENESS_PROGRESS_INTERVAL_SECONDS": "0",
    }
    try:
        stack = DevStack.start(
            root / "project",
            infra=infra,
            progress=lambda line: print(f"[chaos stack {root.name}] {line}", flush=True),
            replicas=replicas,
            extra_env={
                "LIKENESS_INFERENCE_STEPS": "4",
                "LIKENESS_MIN_PHOTOS_FOR_TRAINING": "2",
                # Twenty people of one tenant train and render at once in the load test: room above the
                # per-tenant quotas (`tests/test_quotas_e2e.py` tries those at their bounds).
                "LIKENESS_QUOTA_CONCURRENT_TRAININGS": "100",
                "LIKENESS_QUOTA_CONCURRENT_RENDERS": "100",
            },
            service_env={
                # A killed replica's erasure lease runs out in seconds, not the default two minutes.
                "retention": {"LIKENESS_LEASE_SECONDS": "6"},
                "trainer-worker": worker_env,
                "renderer-worker": worker_env,
                # Twenty people of one tenant upload at once in the load test: room above the per-tenant
                # rate limits (a production tenant's limits are sized to its traffic the same way).
                "gateway": {
                    "LIKENESS_UPLOAD_RATE_LIMIT_BURST": "50",
                    "LIKENESS_RATE_LIMIT_PER_SECOND": "200",
                    "LIKENESS_RATE_LIMIT_BURST": "400",
                },
            },
        )
    except BaseException:
        infra.stop()
        raise
    try:
        yield stack
    finally:
        stack.stop()
        infra.stop()


@pytest.fixture(scope="session")
def chaos_stack(tmp_path_factory: pytest.TempPathFactory, server_process: None) -> Iterator[DevStack]:
    """All servers and services, private to the chaos tests (one of each, the dev stack's servers)."""
    with _private_stack(Path(tmp_path_factory.mktemp("chaos"))) as stack:
        yield stack


@pytest.fixture(scope="module")
def cluster_stack(tmp_path_factory: pytest.TempPathFactory, server_process: None) -> Iterator[DevStack]:
    """Clustered NATS (3 nodes, streams and buckets at 3 replicas) and a persistent, unsealed OpenBao,
    one process per service; for one module, so that it never runs beside another big stack."""
    root = Path(tmp_path_factory.mktemp("cluster"))
    with _private_stack(root, nats_cluster_size=3, persistent_vault=True) as stack:
        yield stack


@pytest.fixture(scope="module")
def replicated_stack(tmp_path_factory: pytest.TempPathFactory, server_process: None) -> Iterator[DevStack]:
    """The cluster stack with two processes of every service (two gateways, two of each worker...)."""
    root = Path(tmp_path_factory.mktemp("replicated"))
    with _private_stack(root, nats_cluster_size=3, persistent_vault=True, replicas=2) as stack:
        yield stack


def _put_back_together(stack: DevStack) -> None:
    """Whatever a test broke: servers first (paused ones resumed, stopped ones started), then services."""
    infra = stack.infra
    for name, process in infra.processes.items():
        infra.resume_server(name)
        if not process.running:
            infra.start_server(name)
    for name, service in stack.services.items():
        if not service.process.running:
            stack.start_service(name)


@pytest.fixture
def whole_stack(chaos_stack: DevStack) -> Iterator[DevStack]:
    """The chaos stack, put back together after the test whatever it broke (servers, then services)."""
    yield chaos_stack
    _put_back_together(chaos_stack)


class Kit:
    """What the chaos tests share: a gateway client, the bucket, the event stream, waiting."""

    def __init__(self, stack: DevStack, ledger: Ledger) -> None:
        self.stack = stack
        self.ledger = ledger
        token = stack.mint_token()
        ledger.add_token(token)
        self.gateway = GatewayClient(stack.gateway_url, token)
        env = stack.infra.endpoints.as_env()
        self.settings = CommonSettings.model_validate(
            {key.removeprefix("LIKENESS_").lower(): value for key, value in env.items()}
        )
        self.store = ObjectStore.from_settings(self.settings)

    def close(self) -> None:
        self.gateway.close()

    # -- the journey's steps ----------------------------------------------------------------------

    def open_subject(self, photos: int = 2, external_ref: str = "") -> str:
        body: dict[str, Any] = {"consent": {"purpose": "headshots", "policy_version": "chaos"}}
        if external_ref:
            body["external_ref"] = external_ref
            self.ledger.add_external_ref(external_ref)
        subject_id = str(self.gateway.json("POST", "/v1/subjects", expect=(201,), json=body)["id"])
        self.ledger.add_subject(subject_id)
        if photos:
            uploaded = self.upload(subject_id, sample_photos(photos))
            assert all(photo["status"] == "accepted" for photo in uploaded), uploaded
        return subject_id

    def upload(
        self, subject_id: str, photos: list[tuple[str, bytes]], expect: tuple[int, ...] = (200,)
    ) -> list[dict[str, Any]]:
        """The verdicts (a 422, every photo rejected, has them too)."""
        self.ledger.add_photos(photos)
        files = [("file", (name, data, "application/octet-stream")) for name, data in photos]
        response = self.gateway.call("POST", f"/v1/subjects/{subject_id}/photos", expect=expect, files=files)
        verdicts: list[dict[str, Any]] = response.json()["photos"]
        return verdicts

    def train(self, subject_id: str, steps: int) -> str:
        path = f"/v1/subjects/{subject_id}/trainings"
        return str(self.gateway.json("POST", path, expect=(202,), json={"steps": steps})["id"])

    def render(
        self,
        subject_id: str,
        training_id: str,
        styles: list[str],
        per_style: int,
        *,
        through_failover: bool = False,
    ) -> str:
        """Submits a render; its id. `through_failover`: a 503 `unavailable` (a JetStream leader being
        elected) is retried as a client would, under one `Idempotency-Key`: a try that completed answers
        every later one; a try cut off midway leaves at most a record the orphan sweeper fails (the test
        still counts one `render.completed`)."""
        body = {"training_id": training_id, "styles": styles, "images_per_style": per_style, "seed": 7}
        path = f"/v1/subjects/{subject_id}/renders"
        if not through_failover:
            return str(self.gateway.json("POST", path, expect=(202,), json=body)["id"])
        headers = {"Idempotency-Key": str(uuid.uuid4())}

        def submitted() -> str | None:
            response = self.gateway.http.post(path, json=body, headers=headers)
            if _is_failover_refusal(response):
                return None
            assert response.status_code == 202, f"POST {path}: {response.status_code} {response.text[:300]}"
            return str(response.json()["id"])

        return until(submitted, 120.0, f"the submit to {path}", every=0.25)

    def ended(self, path: str, timeout: float = 240.0, *, through_failover: bool = False) -> dict[str, Any]:
        """The job at `path` once it has ended (any end), polled through the gateway. `through_failover`:
        a 503 `unavailable` with `Retry-After` (a JetStream leader being elected) is waited out as a client
        would; any other error still fails."""

        def finished() -> dict[str, Any] | None:
            response = self.gateway.http.get(path)
            if through_failover and _is_failover_refusal(response):
                return None
            assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:300]}"
            record: dict[str, Any] = response.json()
            return record if record["status"] in {"succeeded", "failed", "cancelled"} else None

        return until(finished, timeout, f"the end of {path}", every=0.25)

    def download(self, render: dict[str, Any]) -> list[bytes]:
        images = [self.gateway.call("GET", image["url"]).content for image in render["images"]]
        for image, data in zip(render["images"], images, strict=True):
            self.ledger.images[image["id"]] = data
        return images

    def erase(self, subject_id: str, timeout: float = 120.0) -> dict[str, Any]:
        erasure_id = self.gateway.json("DELETE", f"/v1/subjects/{subject_id}", expect=(202,))["erasure_id"]
        return self.erasure_done(str(erasure_id), timeout)

    def erasure_done(self, erasure_id: str, timeout: float = 120.0) -> dict[str, Any]:
        def completed() -> dict[str, Any] | None:
            record = self.gateway.json("GET", f"/v1/erasures/{erasure_id}")
            return record if record["status"] == "completed" else None

        return until(completed, timeout, "the erasure", every=0.25)

    # -- what the servers hold ----------------------------------------------------------------------

    def versions(self, subject_id: str, under: str = "") -> list[StoredObject]:
        """Every object version under the subject's prefix (+ `under`, e.g. "renders/ren_…/")."""
        return self.store.list_versions(subject_prefix(DEV_TENANT, subject_id) + under)

    def events(self, subject_id: str, name: str = ">") -> list[tuple[int, str, bytes]]:
        """(sequence, event name, payload) of the subject's events in the stream (no consumer made)."""

        async def read(bus: Bus) -> list[tuple[int, str, bytes]]:
            found: list[tuple[int, str, bytes]] = []
            sequence = 1
            subject = event_nats_subject(DEV_TENANT, subject_id, name)
            while True:
                try:
                    message = await bus.js.get_msg(EVENTS_STREAM, seq=sequence, subject=subject, next=True)
                except nats.js.errors.NotFoundError:
                    return found
                event_name = str(message.subject).split(".", 3)[3]
                found.append((int(message.seq or 0), event_name, bytes(message.data or b"")))
                sequence = int(message.seq or sequence) + 1

        return self.with_bus(read)

    def stream_leader(self, stream: str) -> str:
        """The server name of the stream's leader in a JetStream cluster ("" while there is none)."""

        async def read(bus: Bus) -> str:
            try:
                info = await bus.js.stream_info(stream)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                return ""  # no leader answers while the servers elect one
            return str(info.cluster.leader or "") if info.cluster else ""

        return str(self.with_bus(read))

    def stream_whole(self, stream: str, replicas: int) -> bool:
        """The stream has a leader and `replicas - 1` followers, every one current (caught up)."""

        async def read(bus: Bus) -> bool:
            try:
                info = await bus.js.stream_info(stream)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                return False
            cluster = info.cluster
            if cluster is None or not cluster.leader:
                return False
            followers = cluster.replicas or []
            return len(followers) == replicas - 1 and all(p.current and not p.offline for p in followers)

        return bool(self.with_bus(read))

    def queue_idle(self, stream: str) -> bool:
        """No job of the work queue (any tenant's) is waiting or held by a worker: a work-queue stream keeps
        a job's message until it is acknowledged or terminated."""

        async def read(bus: Bus) -> bool:
            return not (await bus.js.stream_info(stream)).state.messages

        return self.with_bus(read)

    def with_bus(self, use: Callable[[Bus], Any]) -> Any:
        async def run() -> Any:
            bus = await Bus.connect(self.settings.nats_url, "chaos-test")
            try:
                return await use(bus)
            finally:
                await bus.close()

        return asyncio.run(run())


@pytest.fixture
def kit(whole_stack: DevStack, ledger: Ledger) -> Iterator[Kit]:
    made = Kit(whole_stack, ledger)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def cluster_kit(cluster_stack: DevStack, ledger: Ledger) -> Iterator[Kit]:
    """A kit on the cluster stack, put back together after each test."""
    made = Kit(cluster_stack, ledger)
    try:
        yield made
    finally:
        made.close()
        _put_back_together(cluster_stack)


@pytest.fixture
def replicated_kit(replicated_stack: DevStack, ledger: Ledger) -> Iterator[Kit]:
    made = Kit(replicated_stack, ledger)
    try:
        yield made
    finally:
        made.close()
        _put_back_together(replicated_stack)


def _check_load(
    kit: Kit, photos: Sequence[tuple[str, bytes]], outcome: LoadOutcome, people: int, images: int
) -> None:
    """Every journey of a load ended as it should: each person's photos accepted, their images out, their
    erasure completed, every read of them 404/410 after, and nothing of them left in the bucket."""
    kit.ledger.add_photos(list(photos))
    kit.ledger.add_external_ref("demo-person-1")  # what run_journey sends
    for result in outcome.results:
        kit.ledger.add_subject(result.subject_id)
        for image in result.images:
            kit.ledger.images[image.image_id] = image.data
        assert all(photo["status"] == "accepted" for photo in result.photos), result.photos
        assert len(result.images) == images
        assert result.erasure["status"] == "completed"
        assert all(status in (404, 410) for status in result.after_erasure.values()), result.after_erasure
        assert kit.versions(result.subject_id) == [], "nothing of the person is left"
    assert len({result.subject_id for result in outcome.results}) == people


@pytest.fixture
def check_load() -> Callable[..., None]:
    """`check_load(kit, photos, outcome, people, images_per_journey)` for the load tests."""
    return _check_load


def _is_failover_refusal(response: httpx.Response) -> bool:
    """Whether the gateway answered what a JetStream leader election looks like to a client: 503
    `unavailable` with `Retry-After` (never a 500), or 409 `idempotency_in_progress` for the retry of a
    request whose first try is still being answered."""
    if response.status_code not in (503, 409):
        return False
    assert response.headers.get("retry-after", "").isdigit(), dict(response.headers)
    expected = "unavailable" if response.status_code == 503 else "idempotency_in_progress"
    assert response.json()["error"]["code"] == expected, response.text
    return True


def until(condition: Callable[[], T | None], timeout: float, what: str, every: float = 0.1) -> T:
    """Polls `condition` until it returns something truthy; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:.0f}s"
        time.sleep(every)


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """`until(condition, timeout, what)` for the test files (they may not import from each other)."""
    return until
