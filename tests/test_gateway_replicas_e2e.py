"""A caller's rate limit holds across gateway replicas: two real gateway processes (`python -m gateway
serve`, beside the stack's own, on the same NATS) with a caller's requests alternating between them admit
what one replica alone would, within 10 %; the same two with the sync off admit about twice that.

One replica alone admits its burst and then its rate: `BURST + RATE * elapsed` over a run of `elapsed`
seconds (the limiter's definition, computed from the run's own duration, so a slow machine changes the
figure expected, not the verdict). Each request is a read of a malformed training id: refused or
admitted by the rate limit at the edge, then answered 404 without any backend call, so what is measured
is the limit and not the services behind it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from likeness.ids import new_id
from likeness_dev.replicas import GatewayReplica, gateway_replicas
from likeness_dev.stack import DevStack

RATE, BURST = 20.0, 20
#: Long enough that the burst raced between replicas before their first report is a small part of it.
WINDOW = 12.0
CONTROL_WINDOW = 6.0
LIMITS = {
    "LIKENESS_RATE_LIMIT_PER_SECOND": str(RATE),
    "LIKENESS_RATE_LIMIT_BURST": str(BURST),
    # The tenant's total out of the way: the caller's own bucket is the one measured.
    "LIKENESS_TENANT_RATE_LIMIT_PER_SECOND": "100000",
    "LIKENESS_TENANT_RATE_LIMIT_BURST": "100000",
}


@pytest.fixture(scope="module")
def synced(stack: DevStack) -> Iterator[list[GatewayReplica]]:
    with gateway_replicas(stack, ["gateway-synced-a", "gateway-synced-b"], LIMITS) as replicas:
        yield replicas


@pytest.fixture(scope="module")
def unsynced(stack: DevStack) -> Iterator[list[GatewayReplica]]:
    names = ["gateway-unsynced-a", "gateway-unsynced-b"]
    with gateway_replicas(stack, names, LIMITS | {"LIKENESS_RATE_LIMIT_SYNC": "false"}) as replicas:
        yield replicas


def _alternate(stack: DevStack, replicas: list[GatewayReplica], seconds: float) -> tuple[int, int, float]:
    """A new caller's requests, one at a time, alternating between the replicas for `seconds`: how many
    were admitted, how many sent, and the seconds from the first request to the last."""
    token = stack.mint_token(subject=new_id("sub"))
    clients = [
        httpx.Client(base_url=replica.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        for replica in replicas
    ]
    admitted = sent = 0
    try:
        start = time.monotonic()
        while (last := time.monotonic()) - start < seconds:
            status = clients[sent % len(clients)].get("/v1/trainings/trn_malformed").status_code
            assert status in (404, 429), f"a request the limit admits answers 404 here, not {status}"
            admitted += status == 404
            sent += 1
    finally:
        for client in clients:
            client.close()
    return admitted, sent, last - start


def _one_replica_admits(elapsed: float) -> float:
    return BURST + RATE * elapsed


def _sync_count(replica: GatewayReplica, outcome: str) -> float:
    text = httpx.get(f"{replica.metrics_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            named = sample.name == "likeness_gateway_ratelimit_sync_messages_total"
            if named and sample.labels.get("outcome") == outcome:
                return sample.value
    raise AssertionError("no rate-limit sync metric")


def test_a_callers_limit_holds_when_its_requests_alternate_between_two_replicas(
    stack: DevStack, synced: list[GatewayReplica]
) -> None:
    admitted, sent, elapsed = _alternate(stack, synced, WINDOW)
    alone = _one_replica_admits(elapsed)
    assert sent >= 3 * alone, f"the client must outpace the limit to measure it ({sent} sent)"
    assert abs(admitted - alone) <= 0.1 * alone, (
        f"two synced replicas admitted {admitted} in {elapsed:.1f} s; one alone admits {alone:.0f}"
    )
    for replica in synced:
        assert _sync_count(replica, "received") > 0, "each replica heard the other's reports"
        assert _sync_count(replica, "malformed") == 0


def test_without_the_sync_two_replicas_admit_about_twice_the_limit(
    stack: DevStack, unsynced: list[GatewayReplica]
) -> None:
    """The control: the same two replicas, each limiting alone."""
    admitted, sent, elapsed = _alternate(stack, unsynced, CONTROL_WINDOW)
    alone = _one_replica_admits(elapsed)
    assert sent >= 3 * alone, f"the client must outpace the limit to measure it ({sent} sent)"
    assert admitted >= 1.8 * alone, f"{admitted} admitted in {elapsed:.1f} s; one alone admits {alone:.0f}"
    for replica in unsynced:
        assert _sync_count(replica, "sent") == 0
