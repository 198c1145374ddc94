"""What makes a consent grant live, and which grant a job needs (pure logic: no server)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from likeness.consent import (
    HEADSHOTS,
    INSTANT,
    PURPOSES,
    TEAM_LOOK,
    ConsentReader,
    check_consent_at_start,
    is_live,
    live_grant,
    render_purpose,
    render_purposes,
)
from likeness.jobs import CONSENT_WITHDRAWN_REASON, CancelFlag, JobCancelled
from likeness.timeutil import to_timestamp
from likeness.v1 import retention_pb2

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _grant(purpose: str, **moments: datetime) -> retention_pb2.ConsentGrant:
    grant = retention_pb2.ConsentGrant(id=f"g-{purpose}-{len(moments)}", purpose=purpose)
    for field, moment in moments.items():
        getattr(grant, field).CopyFrom(to_timestamp(moment))
    return grant


def test_the_purposes_are_the_fixed_list_of_the_issue() -> None:
    assert PURPOSES == ("headshots", "team_look", "instant")


def test_a_grant_is_live_until_it_is_withdrawn_or_expires() -> None:
    assert is_live(_grant(HEADSHOTS), NOW)
    assert is_live(_grant(HEADSHOTS, expires_at=NOW + timedelta(seconds=1)), NOW)
    assert not is_live(_grant(HEADSHOTS, expires_at=NOW), NOW)
    assert not is_live(_grant(HEADSHOTS, withdrawn_at=NOW - timedelta(days=1)), NOW)


def test_only_a_live_grant_of_the_purpose_counts() -> None:
    record = retention_pb2.SubjectConsents(grants=[_grant(HEADSHOTS, withdrawn_at=NOW), _grant(TEAM_LOOK)])
    assert live_grant(record, HEADSHOTS, NOW) is None
    assert live_grant(record, TEAM_LOOK, NOW) is not None
    assert live_grant(None, TEAM_LOOK, NOW) is None
    record.grants.append(_grant(HEADSHOTS))
    assert live_grant(record, HEADSHOTS, NOW) == record.grants[-1]


def test_a_render_in_a_team_look_needs_the_team_look_grant() -> None:
    assert render_purpose("sales-emea") == TEAM_LOOK
    assert render_purpose("") == HEADSHOTS


def test_an_instant_render_needs_the_instant_grant_and_that_of_any_model_it_uses() -> None:
    assert render_purposes("", instant=False, trained=True) == (HEADSHOTS,)
    assert render_purposes("", instant=True, trained=False) == (INSTANT,)
    assert render_purposes("", instant=True, trained=True) == (HEADSHOTS, INSTANT)
    assert render_purposes("sales-emea", instant=True, trained=False) == (TEAM_LOOK, INSTANT)


class _Reader(ConsentReader):
    """Answers from a fixed record instead of retention's bucket."""

    def __init__(self, record: retention_pb2.SubjectConsents) -> None:
        self.record = record

    async def live(
        self, tenant: str, subject_id: str, purpose: str, now: datetime
    ) -> retention_pb2.ConsentGrant | None:
        return live_grant(self.record, purpose, now)


def test_a_worker_cancels_a_job_whose_grant_is_gone_and_runs_one_whose_grant_is_live() -> None:
    flag = CancelFlag()
    withdrawn = _Reader(retention_pb2.SubjectConsents(grants=[_grant(HEADSHOTS, withdrawn_at=NOW)]))
    with pytest.raises(JobCancelled):
        asyncio.run(check_consent_at_start(withdrawn, "t", "sub_x", HEADSHOTS, flag))
    assert (flag.is_set(), flag.reason) == (True, CONSENT_WITHDRAWN_REASON)

    flag = CancelFlag()
    live = _Reader(retention_pb2.SubjectConsents(grants=[_grant(HEADSHOTS)]))
    asyncio.run(check_consent_at_start(live, "t", "sub_x", HEADSHOTS, flag))
    assert not flag.is_set()
