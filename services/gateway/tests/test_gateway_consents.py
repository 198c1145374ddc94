"""The consent routes' input, refused at the gateway before any backend is asked (fake backends; the
routes against the real stack: `tests/test_consent_e2e.py`)."""

from __future__ import annotations

import pytest

CONSENTS = "/v1/subjects/sub_01jbz3k7q8m2x4v6n9p0r5t7wy/consents"


@pytest.mark.parametrize("purpose", ["professional headshots", "Headshots", ""])
async def test_a_subject_opens_only_with_one_of_the_fixed_purposes(client, auth, fakes, purpose) -> None:
    opened = len(fakes.retention.opened)
    body = {"consent": {"purpose": purpose, "policy_version": "2026-01"}}
    response = await client.post("/v1/subjects", json=body, headers=auth())
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert len(fakes.retention.opened) == opened


@pytest.mark.parametrize(
    "body",
    [
        {"purpose": "everything", "policy_version": "1"},
        {"purpose": "headshots", "policy_version": " "},
        {"purpose": "headshots", "policy_version": "1", "expires_at": 0},
        {"purpose": "headshots", "policy_version": "1", "expires_at": "tomorrow"},
    ],
)
async def test_a_malformed_grant_is_refused_before_retention_is_asked(client, auth, body) -> None:
    response = await client.post(CONSENTS, json=body, headers=auth())
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize("path", ["/v1/consent-policy", "/v1/retention-policy"])
async def test_a_body_that_is_not_utf8_is_the_documented_422(client, auth, path) -> None:
    headers = {**auth(), "content-type": "application/json"}
    response = await client.put(path, content=b"\xff", headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
