"""The per-tenant work queues' names and filters, and the order a worker visits them in (no server)."""

from __future__ import annotations

import pytest

from likeness.access_policies import nats_permissions
from likeness.provisioning import RENDER_QUEUES, TRAIN_QUEUES, identity
from likeness.tenant_queues import Backlog, consumer_max_deliver, visiting_order


def _backlog(tenant: str, priority: str | None = None, pending: int = 0, unacked: int = 0) -> Backlog:
    name = RENDER_QUEUES.consumer_name(tenant, priority) if priority else TRAIN_QUEUES.consumer_name(tenant)
    return Backlog(name, tenant, priority, pending, unacked)


def test_names_and_filters_are_per_tenant_and_never_overlap() -> None:
    assert TRAIN_QUEUES.consumer_name("acme") == "train-acme"
    assert TRAIN_QUEUES.filter_subject("acme") == "job.train.acme.*"
    assert RENDER_QUEUES.consumer_name("acme", "bulk") == "render-acme-bulk"
    assert RENDER_QUEUES.filter_subject("acme", "interactive") == "job.render.acme.interactive.*"
    # A tenant whose name ends like a priority still gets names of its own.
    names = {
        RENDER_QUEUES.consumer_name(tenant, priority)
        for tenant in ("a", "a-bulk", "a-interactive")
        for priority in ("interactive", "bulk")
    }
    assert len(names) == 6
    with pytest.raises(ValueError, match="interactive, bulk"):
        RENDER_QUEUES.filter_subject("acme", None)


@pytest.mark.parametrize(
    ("filter_subject", "parsed"),
    [
        ("job.render.acme.bulk.*", ("acme", "bulk")),
        ("job.render.acme.interactive.*", ("acme", "interactive")),
        ("job.render.acme.urgent.*", None),
        ("job.render.>", None),
        ("job.train.acme.*", None),
    ],
    ids=["bulk", "interactive", "unknown-priority", "the-retired-shared-filter", "another-queue"],
)
def test_a_render_consumer_is_known_by_its_filter(
    filter_subject: str, parsed: tuple[str, str] | None
) -> None:
    assert RENDER_QUEUES.parse_filter(filter_subject) == parsed


def test_the_serve_role_creates_only_its_own_queues_and_workers_create_none() -> None:
    trainer = nats_permissions(identity("trainer")).publish_allow
    assert "$JS.API.CONSUMER.CREATE.LIKENESS_JOBS_TRAIN.*.job.train.*.*" in trainer
    assert not [subject for subject in trainer if "CONSUMER.CREATE.LIKENESS_JOBS_RENDER" in subject]
    renderer = nats_permissions(identity("renderer")).publish_allow
    assert "$JS.API.CONSUMER.CREATE.LIKENESS_JOBS_RENDER.*.job.render.*.*.*" in renderer
    for worker in ("trainer-worker", "renderer-worker"):
        allowed = nats_permissions(identity(worker)).publish_allow
        creates = [subject for subject in allowed if ".CONSUMER.CREATE.LIKENESS_JOBS_" in subject]
        assert creates == [], worker
        assert not [subject for subject in allowed if ".CONSUMER.DELETE.LIKENESS_JOBS_" in subject], worker


def test_tenants_with_work_are_visited_round_robin_after_the_last_one_served() -> None:
    backlogs = [
        _backlog("a", pending=200),
        _backlog("b", pending=1),
        _backlog("c"),  # nothing: not visited
        _backlog("d", unacked=1),  # running elsewhere, or a redelivery due: visited in its turn
    ]
    order = [backlog.tenant for backlog in visiting_order(backlogs, last_tenant="a")]
    assert order == ["b", "d", "a"], "the tenant served last comes last"
    assert [b.tenant for b in visiting_order(backlogs, last_tenant=None)] == ["a", "b", "d"]
    assert [b.tenant for b in visiting_order(backlogs, last_tenant="d")] == ["a", "b", "d"]
    assert [b.tenant for b in visiting_order(backlogs, last_tenant="zz")] == ["a", "b", "d"]


def test_within_a_tenant_interactive_comes_before_bulk() -> None:
    backlogs = [
        _backlog("a", "bulk", pending=5),
        _backlog("a", "interactive", pending=1),
        _backlog("b", "bulk", pending=1),
    ]
    order = [(b.tenant, b.priority) for b in visiting_order(backlogs, last_tenant=None)]
    assert order == [("a", "interactive"), ("a", "bulk"), ("b", "bulk")]
    # A queue with only unacknowledged jobs (maybe a redelivery due) is tried after one with waiting jobs.
    backlogs = [_backlog("a", "interactive", unacked=1), _backlog("a", "bulk", pending=1)]
    order = [(b.tenant, b.priority) for b in visiting_order(backlogs, last_tenant=None)]
    assert order == [("a", "bulk"), ("a", "interactive")]


def test_a_job_consumer_keeps_one_delivery_for_the_final_failure() -> None:
    assert consumer_max_deliver(3) == 4
