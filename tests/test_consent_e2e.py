"""Consent binds every training and render, through the real stack (gateway, retention, trainer, renderer,
their workers; NATS, SeaweedFS, OpenBao): issue 16's first "must show".

- A tenant-level training or render of a subject without a live grant for its purpose: 403
  `consent_required`. After the person grants with their own token: allowed.
- After the person withdraws: the queued renders are cancelled (`consent withdrawn`) by the renderer's
  serve role, even with no worker up, and new ones are refused.
- A render and a training queued under a grant that lapses before a worker takes them are cancelled by
  each worker's own check when it starts, never run.
- With the tenant's policy `grants_need_subject_token`, a grant made with a tenant-level token is refused
  (403 `grant_needs_subject_token`); the person's own token still grants.

The stack is shared with other tests: the workers are restarted and the tenant's policy reset at the end,
whatever happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from likeness_dev.journey import GatewayClient
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack

TERMINAL = {"succeeded", "failed", "cancelled"}
RENDER = {"styles": ["linkedin"], "images_per_style": 1}


def _until(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 403, response.text[:300]
    assert response.json()["error"]["code"] == code, response.text[:300]


@pytest.fixture
def person_client(stack: DevStack) -> Iterator[Callable[[str], GatewayClient]]:
    """A client with the person's own token (`sub`), for a subject opened in the test."""
    made: list[GatewayClient] = []

    def make(subject_id: str) -> GatewayClient:
        client = GatewayClient(stack.gateway_url, stack.mint_token(subject=subject_id))
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def _render_status(gateway: GatewayClient, render_id: str) -> dict[str, Any]:
    return gateway.json("GET", f"/v1/renders/{render_id}")


def test_consent_gates_trainings_and_renders_and_withdrawal_cancels_them(
    stack: DevStack, gateway: GatewayClient, person_client: Callable[[str], GatewayClient]
) -> None:
    # Opened for `instant` only: the tenant's consent at opening is a grant, but not for headshots.
    subject_id = gateway.json(
        "POST", "/v1/subjects", expect=(201,), json={"consent": {"purpose": "instant", "policy_version": "1"}}
    )["id"]
    files = [("file", (name, data, "application/octet-stream")) for name, data in sample_photos(2)]
    gateway.json("POST", f"/v1/subjects/{subject_id}/photos", files=files)
    trainings = f"/v1/subjects/{subject_id}/trainings"
    _refused(gateway.http.post(trainings, json={"steps": 2}), "consent_required")

    person = person_client(subject_id)
    consents = f"/v1/subjects/{subject_id}/consents"
    grant = person.json(
        "POST",
        consents,
        expect=(201,),
        json={"purpose": "headshots", "policy_version": "2026-01"},
    )
    assert (grant["granted_by"], grant["live"]) == ("subject", True)
    training_id = gateway.json("POST", trainings, expect=(202,), json={"steps": 2})["id"]
    training = gateway.wait(
        f"/v1/trainings/{training_id}", lambda t: t["status"] in TERMINAL, 300, print, "t"
    )
    assert training["status"] == "succeeded", training

    renders = f"/v1/subjects/{subject_id}/renders"
    body = {"training_id": training_id, **RENDER}
    try:
        # No worker: renders stay queued until the withdrawal reaches the renderer's serve role.
        stack.stop_service("renderer-worker")
        queued = [gateway.json("POST", renders, expect=(202,), json=body)["id"] for _ in range(2)]
        assert {_render_status(gateway, render_id)["status"] for render_id in queued} == {"queued"}

        withdrawal = person.json("DELETE", consents, params={"purpose": "headshots"})
        assert [g["id"] for g in withdrawal["withdrawn"]] == [grant["id"]]
        _until(
            lambda: all(_render_status(gateway, r)["status"] == "cancelled" for r in queued),
            "the queued renders to be cancelled",
        )
        assert {_render_status(gateway, r)["error"] for r in queued} == {"consent withdrawn"}
        _refused(gateway.http.post(renders, json=body), "consent_required")
        _refused(gateway.http.post(trainings, json={"steps": 2}), "consent_required")

        # A grant that lapses while its jobs queue (no event): each worker's own check cancels its job
        # when it starts, before anything of the person is decrypted.
        stack.stop_service("trainer-worker")
        expires = (datetime.now(UTC) + timedelta(seconds=4)).isoformat()
        person.json(
            "POST",
            consents,
            expect=(201,),
            json={"purpose": "headshots", "policy_version": "2026-01", "expires_at": expires},
        )
        lapsing = {
            f"/v1/renders/{gateway.json('POST', renders, expect=(202,), json=body)['id']}",
            f"/v1/trainings/{gateway.json('POST', trainings, expect=(202,), json={'steps': 2})['id']}",
        }
        time.sleep(5)
    finally:
        stack.start_service("renderer-worker")
        stack.start_service("trainer-worker")
    for path in lapsing:
        ended = gateway.wait(path, lambda job: job["status"] in TERMINAL, 120, print, "lapsed job")
        assert (ended["status"], ended["error"]) == ("cancelled", "consent withdrawn"), path
        assert not ended.get("images"), path
    for render_id in queued:
        assert _render_status(gateway, render_id)["status"] == "cancelled", "a restarted worker runs none"

    listed = person.json("GET", consents)["grants"]
    assert [(g["purpose"], g["live"]) for g in listed] == [
        ("instant", True),
        ("headshots", False),
        ("headshots", False),
    ]


def test_a_tenant_that_takes_consent_only_from_the_person_refuses_a_tenant_level_grant(
    gateway: GatewayClient, person_client: Callable[[str], GatewayClient]
) -> None:
    subject_id = gateway.json(
        "POST",
        "/v1/subjects",
        expect=(201,),
        json={"consent": {"purpose": "headshots", "policy_version": "1"}},
    )["id"]
    grant = {"purpose": "team_look", "policy_version": "2026-01"}
    consents = f"/v1/subjects/{subject_id}/consents"
    # Policy off (the default): the tenant's back end may grant.
    assert gateway.json("POST", consents, expect=(201,), json=grant)["granted_by"] == "tenant"
    try:
        policy = {"grants_need_subject_token": True, "erase_on_withdrawal": False}
        assert gateway.json("PUT", "/v1/consent-policy", json=policy) == policy
        _refused(gateway.http.post(consents, json=grant), "grant_needs_subject_token")
        person = person_client(subject_id)
        assert person.json("POST", consents, expect=(201,), json=grant)["granted_by"] == "subject"
        by = [g["granted_by"] for g in person.json("GET", consents)["grants"]]
        assert by == ["tenant", "tenant", "subject"], "the refused grant left nothing"
    finally:
        off = {"grants_need_subject_token": False, "erase_on_withdrawal": False}
        gateway.json("PUT", "/v1/consent-policy", json=off)
