"""Quota refusals of the trainer and renderer (`likeness.quotas`) as the gateway answers them, and the
tenant's usage report (`GET /v1/usage`)."""

from __future__ import annotations

import pytest

from likeness.quota_policy import (
    ACTIVE_TRAINING_PER_SUBJECT,
    CONCURRENT_RENDERS,
    GPU_SECONDS_PER_DAY,
    TRAINING_STEPS,
    Refusal,
)


@pytest.mark.parametrize(
    ("quota", "retry_after"),
    [(TRAINING_STEPS, 3600), (ACTIVE_TRAINING_PER_SUBJECT, 30), (GPU_SECONDS_PER_DAY, 4321)],
    ids=["training_steps", "active_training_per_subject", "gpu_seconds_per_day"],
)
async def test_a_refused_training_is_429_naming_the_quota(
    client, auth, world, fakes, quota: str, retry_after: int
) -> None:
    fakes.trainer.quota_refusal = Refusal(quota, "refused by a quota", retry_after)
    try:
        response = await client.post(f"/v1/subjects/{world.subject}/trainings", json={}, headers=auth())
    finally:
        fakes.trainer.quota_refusal = None
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert (error["code"], error["quota"]) == ("quota_exceeded", quota)
    assert error["message"] == "refused by a quota"
    assert response.headers["Retry-After"] == str(retry_after)


async def test_a_refused_render_is_429_naming_the_quota(client, auth, world, fakes) -> None:
    fakes.renderer.quota_refusal = Refusal(CONCURRENT_RENDERS, "too many renders", 30)
    body = {"training_id": world.done_training, "styles": ["studio"]}
    try:
        response = await client.post(f"/v1/subjects/{world.subject}/renders", json=body, headers=auth())
    finally:
        fakes.renderer.quota_refusal = None
    assert response.status_code == 429, response.text
    assert response.json()["error"]["quota"] == CONCURRENT_RENDERS
    assert response.headers["Retry-After"] == "30"


async def test_other_errors_name_no_quota(client, auth) -> None:
    response = await client.get("/v1/renders/ren_00000000000000000000000000", headers=auth())
    assert response.status_code == 404
    assert "quota" not in response.json()["error"]


async def test_usage_reports_both_kinds_of_job_against_the_limits(client, auth) -> None:
    response = await client.get("/v1/usage", headers=auth(scopes=["usage:read", "tenant:all"]))
    assert response.status_code == 200, response.text
    usage = response.json()
    assert usage["trainings"] == {"in_flight": 1, "limit": 4}
    assert usage["renders"] == {"in_flight": 3, "limit": 16}
    assert usage["max_training_steps"] == 3000
    gpu = usage["gpu_seconds"]
    assert (gpu["day"], gpu["seconds"], gpu["limit"]) == ("20261205", 12.5, 3600.0)
    assert 1 <= gpu["resets_in_seconds"] <= 24 * 3600


@pytest.mark.parametrize(
    "scopes",
    [["usage:read"], ["audit:read", "tenant:all"]],
    ids=["not_tenant_wide", "no_usage_scope"],
)
async def test_usage_needs_a_tenant_wide_token_with_its_scope(client, auth, scopes) -> None:
    response = await client.get("/v1/usage", headers=auth(scopes=scopes))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"
