"""Every access to a person's data is audited once, with its principal and purpose, and the person can read
it (issue 16, item 2), through the real stack (gateway, retention, ingest, trainer, renderer and their
workers; NATS, SeaweedFS, OpenBao).

- After a journey (the tenant opens the subject, the person uploads, the tenant trains, the person renders,
  downloads an image, exports, grants and withdraws `team_look`, withdraws `headshots` so that the
  tenant's next training is refused, and asks for erasure), each access is in the person's processing log
  exactly once, with the right principal (`subject`, `tenant`, `service:<worker>`) and purpose; nothing in
  the log is recorded twice.
- 1,000 status reads (the subject, the render) write no record; one download writes one.
- Another person's token gets 404 for the log (and their attempt is recorded as `access.denied` on the
  person's log); a tenant-level token gets 403 `own_token_required`.
- The tenant's trail needs `audit:read` on a tenant-wide token; with it, the person's records are there
  under their pseudonym only.
- The export holds the log (`processing_log.json`), this export's own accesses included.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from likeness_dev.journey import GatewayClient
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_dev.tokens import ALL_SCOPES

TERMINAL = {"succeeded", "failed", "cancelled"}
STATUS_READS = 1000


@pytest.fixture
def gateway(stack: DevStack) -> Iterator[GatewayClient]:
    """The tenant's client. Patient: the status reads below spend the tenant's and the person's rate
    buckets on purpose, and every later call of the test waits its turn rather than failing on a 429."""
    client = GatewayClient(stack.gateway_url, stack.mint_token(), patient=True)
    yield client
    client.close()


@pytest.fixture
def person_client(stack: DevStack) -> Iterator[Callable[[str], GatewayClient]]:
    """A patient client (see `gateway`) with the person's own token (`sub`), for a subject opened here."""
    made: list[GatewayClient] = []

    def make(subject_id: str) -> GatewayClient:
        client = GatewayClient(stack.gateway_url, stack.mint_token(subject=subject_id), patient=True)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def _log(client: GatewayClient, subject_id: str) -> list[dict[str, Any]]:
    """The person's whole processing log, page by page (a small page size, so paging is exercised)."""
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 5}
        if cursor:
            params["cursor"] = cursor
        page = client.json("GET", f"/v1/subjects/{subject_id}/processing-log", params=params)
        entries += page["entries"]
        cursor = page["next_cursor"]
        if not cursor:
            return entries


def _seen(entries: list[dict[str, Any]]) -> Counter[tuple[str, str | None, str, str | None]]:
    return Counter((e["action"], e["resource_id"], e["principal"], e["purpose"]) for e in entries)


def _wait(gateway: GatewayClient, path: str) -> dict[str, Any]:
    found = gateway.wait(path, lambda r: r["status"] in TERMINAL, 600, print, path)
    assert found["status"] == "succeeded", found
    return found


def test_each_access_is_in_the_persons_log_once_with_its_principal_and_purpose(
    stack: DevStack, gateway: GatewayClient, person_client: Callable[[str], GatewayClient]
) -> None:
    # The tenant opens the subject for headshots (its consent becomes the first grant).
    subject_id = gateway.json(
        "POST",
        "/v1/subjects",
        expect=(201,),
        json={"consent": {"purpose": "headshots", "policy_version": "1"}},
    )["id"]
    person = person_client(subject_id)
    files = [("file", (name, data, "application/octet-stream")) for name, data in sample_photos(2)]
    photos = person.json("POST", f"/v1/subjects/{subject_id}/photos", files=files)["photos"]
    accepted = [photo["id"] for photo in photos if photo["status"] == "accepted"]
    assert accepted, photos
    training_id = gateway.json(
        "POST", f"/v1/subjects/{subject_id}/trainings", expect=(202,), json={"steps": 2}
    )["id"]
    _wait(gateway, f"/v1/trainings/{training_id}")
    body = {"training_id": training_id, "styles": ["linkedin"], "images_per_style": 1}
    render_id = person.json("POST", f"/v1/subjects/{subject_id}/renders", expect=(202,), json=body)["id"]
    render = _wait(person, f"/v1/renders/{render_id}")
    image = render["images"][0]

    # Status reads are not accesses to personal data: a thousand of them write nothing; one download does.
    before = _log(person, subject_id)
    for index in range(STATUS_READS):
        client, path = (
            (person, f"/v1/subjects/{subject_id}") if index % 2 else (gateway, f"/v1/renders/{render_id}")
        )
        assert client.http.get(path).status_code == 200
    assert _log(person, subject_id) == before, "a status read wrote an audit record"
    assert person.call("GET", image["url"]).content
    after_download = _log(person, subject_id)
    assert [e["action"] for e in after_download[len(before) :]] == ["image.downloaded"]

    # The export (the person's own token) decrypts everything again, and holds the log up to itself.
    archive = zipfile.ZipFile(io.BytesIO(person.call("GET", f"/v1/subjects/{subject_id}/export").content))
    exported_log = json.loads(archive.read("processing_log.json"))["entries"]
    exported = _seen(exported_log)
    assert exported[("photos.exported", None, "subject", "export")] == 1
    assert exported[("image.downloaded", image["id"], "subject", "export")] == 1
    assert exported[("subject.exported", None, "subject", "export")] == 1, "retention's part of the export"

    # A grant and its withdrawal, with the person's own token.
    consents = f"/v1/subjects/{subject_id}/consents"
    grant = person.json(
        "POST", consents, expect=(201,), json={"purpose": "team_look", "policy_version": "2026-01"}
    )
    person.json("DELETE", consents, params={"purpose": "team_look"})

    # Another person's token: 404, as for no such subject, and the attempt is on the person's log. A
    # tenant-level token: 403, the log is the person's own.
    other_subject = gateway.json(
        "POST",
        "/v1/subjects",
        expect=(201,),
        json={"consent": {"purpose": "headshots", "policy_version": "1"}},
    )["id"]
    other = person_client(other_subject)
    refused = other.http.get(f"/v1/subjects/{subject_id}/processing-log")
    assert refused.status_code == 404, refused.text[:300]
    tenant_refused = gateway.http.get(f"/v1/subjects/{subject_id}/processing-log")
    assert tenant_refused.status_code == 403, tenant_refused.text[:300]
    assert tenant_refused.json()["error"]["code"] == "own_token_required"

    # Without a live grant, a training is refused, and the refusal is on the log (the tenant tried).
    person.json("DELETE", consents, params={"purpose": "headshots"})
    refused_training = gateway.http.post(f"/v1/subjects/{subject_id}/trainings", json={"steps": 2})
    assert refused_training.status_code == 403, refused_training.text[:300]
    assert refused_training.json()["error"]["code"] == "consent_required"

    # The person asks for erasure at the end; the log outlives the data (it names them by pseudonym only).
    erasure_id = person.json("DELETE", f"/v1/subjects/{subject_id}", expect=(202,))["erasure_id"]
    gateway.wait(f"/v1/erasures/{erasure_id}", lambda r: r["status"] == "completed", 300, print, "erasure")

    entries = _log(person, subject_id)
    seen = _seen(entries)
    expected = {
        ("subject.opened", None, "tenant", "headshots"),
        *(("photo.stored", photo_id, "subject", None) for photo_id in accepted),
        ("photos.decrypted", training_id, "service:trainer-worker", "headshots"),
        ("model.decrypted", render_id, "service:renderer-worker", "headshots"),
        ("image.downloaded", image["id"], "subject", "access"),
        ("photos.exported", None, "subject", "export"),
        ("image.downloaded", image["id"], "subject", "export"),
        ("subject.exported", None, "subject", "export"),
        ("consent.granted", grant["id"], "subject", "team_look"),
        ("consent.withdrawn", grant["id"], "subject", "team_look"),
        ("access.denied", None, "subject", None),
        ("training.refused", None, "tenant", "headshots"),
        ("subject.erase_requested", erasure_id, "subject", "erasure"),
        ("subject.key_destroyed", erasure_id, "service:retention", "erasure"),
    }
    missing = {record for record in expected if seen[record] != 1}
    assert not missing, f"not exactly once in the log: {missing}; the log: {sorted(map(str, seen))}"
    duplicated = [record for record, count in seen.items() if count > 1]
    assert not duplicated, f"recorded more than once: {duplicated}"
    assert [e["sequence"] for e in entries] == sorted(e["sequence"] for e in entries), "oldest first"
    assert all(subject_id not in json.dumps(entry) for entry in entries), "the log names nobody in clear"
    assert all(e["subject_pseudonym"] is None for e in entries), "the person's own log needs no pseudonym"


def test_the_tenants_trail_needs_the_audit_scope_on_a_tenant_wide_token(
    stack: DevStack, gateway: GatewayClient, person_client: Callable[[str], GatewayClient]
) -> None:
    subject_id = gateway.json(
        "POST",
        "/v1/subjects",
        expect=(201,),
        json={"consent": {"purpose": "headshots", "policy_version": "1"}},
    )["id"]
    without = GatewayClient(
        stack.gateway_url, stack.mint_token(scopes=[s for s in ALL_SCOPES if s != "audit:read"])
    )
    person = person_client(subject_id)
    try:
        for client in (without, person):
            refused = client.http.get("/v1/audit")
            assert refused.status_code == 403, refused.text[:300]
            assert refused.json()["error"]["code"] == "insufficient_scope"
    finally:
        without.close()

    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = gateway.json(
            "GET", "/v1/audit", params={"limit": 100, **({"cursor": cursor} if cursor else {})}
        )
        entries += page["entries"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    opened = [e for e in entries if e["action"] == "subject.opened"]
    assert opened, "the tenant's trail holds the subjects it opened"
    pseudonyms = {e["subject_pseudonym"] for e in opened}
    assert None not in pseudonyms, "every subject's record names its pseudonym"
    assert len(pseudonyms) == len(opened), "one pseudonym per person"
    assert subject_id not in json.dumps(entries), "the trail names people only by pseudonym"
