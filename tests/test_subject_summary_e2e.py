"""The subject summary (`GET /v1/subjects/{id}/summary`, issue 16 item 7) against the real stack: after a
journey (photos, a training, a render), its counts and bytes are those of the objects really in S3 under
the person's prefix (listed here with root credentials, every version counted), each item has its deletion
date and the rule that sets it, the live grants and the last access are there; the person's own token reads
it through the client and the CLI, and another person's token gets 404."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest

from likeness.config import CommonSettings
from likeness.object_names import subject_prefix
from likeness.store import ObjectStore
from likeness.user_tokens import TENANT_WIDE_SCOPE
from likeness_cli.main import main
from likeness_client import LikenessClient, Retention, SubjectSummary
from likeness_client.audit_models import AuditEntry
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_dev.tokens import ALL_SCOPES

OTHER_SUBJECT = "sub_01jbz3k7q8m2x4v6n9p0r5t7wy"
#: Where each object kind lies under the subject's prefix, and the category that reports it.
CATEGORY_OF = {"photos": "photos", "faces": "face_templates", "renders": "images"}
#: A tenant of this module's own, with a schedule whose periods all differ, so each rule shows in its dates.
TENANT = "summaries"
SCHEDULE = Retention(
    photos_days=20, photos_deleted_after_training=False, models_days=40, renders_days=30, inactivity_days=300
)
#: The rule and the period each category's items are deleted by under SCHEDULE.
RULES = {
    "photos": ("photos_days", 20),
    "face_templates": ("photos_days", 20),  # a photo's; the set beside a model: models_days (below)
    "models": ("models_days", 40),
    "renders": ("renders_days", 30),
    "images": ("renders_days", 30),
}


@dataclass
class Journey:
    subject_id: str
    training_id: str
    render_id: str
    summary: SubjectSummary
    #: The person's processing log, read right after the summary.
    log: list[AuditEntry]
    #: What S3 holds for the subject when the summary was read: category -> item id -> (bytes, versions).
    held: dict[str, dict[str, tuple[int, int]]]


def stored_items(stack: DevStack, tenant: str, subject_id: str) -> dict[str, dict[str, tuple[int, int]]]:
    """The subject's objects as S3 lists them (root credentials), grouped as the summary groups them."""
    env = stack.infra.endpoints.as_env()
    settings = CommonSettings.model_validate({k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()})
    prefix = subject_prefix(tenant, subject_id)
    held: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for version in ObjectStore.from_settings(settings).list_versions(prefix):
        if version.size == 0:
            continue  # a delete marker holds nothing
        parts = version.key[len(prefix) :].split("/")
        if parts[0] == "models":
            category, item = ("face_templates", parts[1]) if parts[2] == "faces" else ("models", parts[1])
        else:
            category, item = CATEGORY_OF[parts[0]], parts[-1]
        for name, item_id in [(category, item)] + ([("renders", parts[1])] if parts[0] == "renders" else []):
            held[name][item_id][0] += version.size
            held[name][item_id][1] += 1
    return {
        name: {item: (size, count) for item, (size, count) in items.items()} for name, items in held.items()
    }


@pytest.fixture(scope="module")
def journey(stack: DevStack) -> Journey:
    token = stack.mint_token(tenant=TENANT, scopes=ALL_SCOPES)
    with LikenessClient(stack.gateway_url, token, timeout=120) as client:
        client.set_retention_policy(SCHEDULE)
        subject = client.create_subject(purpose="headshots", policy_version="2026-01")
        client.upload_photos(subject.id, sample_photos(3))
        training = client.create_training(subject.id, steps=2)
        assert list(client.poll_training(training.id, interval=0.5))[-1].status == "succeeded"
        render = client.create_render(
            subject.id, training_id=training.id, styles=["linkedin"], images_per_style=1, seed=5
        )
        assert list(client.poll_render(render.id, interval=0.5))[-1].status == "succeeded"
    own = stack.mint_token(tenant=TENANT, scopes=["subjects:read"], subject=subject.id)
    with LikenessClient(stack.gateway_url, own, timeout=60) as client:
        summary = client.get_subject_summary(subject.id)
        log = list(client.iter_processing_log(subject.id))
    held = stored_items(stack, TENANT, subject.id)
    return Journey(subject.id, training.id, render.id, summary, log, held)


def test_counts_and_bytes_are_what_s3_holds_for_the_subject(journey: Journey) -> None:
    reported = {
        category.name: {item.id: (item.bytes, item.versions) for item in category.items}
        for category in journey.summary.categories
        if category.name not in ("consents", "processing_log")
    }
    assert {name: items for name, items in reported.items() if items} == journey.held
    for category in journey.summary.categories:
        if category.name != "processing_log":  # counted in records, not items
            assert category.count == len(category.items)
        assert category.bytes == sum(item.bytes for item in category.items)
    assert set(journey.held["models"]) == {journey.training_id}
    assert set(journey.held["renders"]) == {journey.render_id}
    assert journey.summary.category("images").count == 1


def test_each_item_has_its_deletion_date_and_the_rule_that_sets_it(journey: Journey) -> None:
    summary = journey.summary
    assert summary.delete_by is not None
    assert summary.deletion_rule == "inactivity", "300 days of inactivity come before the legal cap"
    assert summary.category("photos").count == 3, "kept after training under this schedule"
    for name, (rule, days) in RULES.items():
        category = summary.category(name)
        assert category.items, name
        for item in category.items:
            model_set = name == "face_templates" and item.parent_id == journey.training_id
            expected_rule, expected_days = ("models_days", 40) if model_set else (rule, days)
            assert item.deletion_rule == expected_rule, (name, item)
            assert item.stored_at is not None
            assert item.delete_by is not None
            # From the deadline retention keeps (set by the event, seconds from the object's write).
            drift = abs(item.delete_by - (item.stored_at + timedelta(days=expected_days)))
            assert drift < timedelta(minutes=5), (name, item)
            assert item.delete_by < summary.delete_by, "nothing outlives the subject's own deadline"
    [grant] = summary.live_grants
    assert (grant.purpose, grant.granted_by, grant.live) == ("headshots", "tenant", True)
    assert [item.id for item in summary.category("consents").items] == [grant.id]
    # The processing log: counted from the audit stream, kept after the data (it names no one in clear),
    # and its newest record is the last access.
    log = summary.category("processing_log")
    [entry] = log.items
    assert log.count == entry.versions == len(journey.log) > 0, "every record of the person's log"
    assert entry.deletion_rule == "audit_retention"
    assert entry.delete_by is not None
    assert entry.delete_by > summary.delete_by
    assert summary.last_access_source == "processing_log"
    assert summary.last_access_at == journey.log[-1].at


def test_another_person_s_token_gets_404_and_a_tenant_token_reads_it(
    stack: DevStack, journey: Journey
) -> None:
    url = f"{stack.gateway_url}/v1/subjects/{journey.subject_id}/summary"
    other = stack.mint_token(tenant=TENANT, scopes=["subjects:read"], subject=OTHER_SUBJECT)
    refused = httpx.get(url, headers={"Authorization": f"Bearer {other}"}, timeout=30)
    assert refused.status_code == 404, refused.text
    assert refused.json()["error"]["code"] == "not_found"
    assert journey.subject_id not in refused.text

    tenant = stack.mint_token(tenant=TENANT, scopes=["subjects:read", TENANT_WIDE_SCOPE])
    answer = httpx.get(url, headers={"Authorization": f"Bearer {tenant}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["subject_id"] == journey.subject_id


def test_the_cli_prints_the_summary(
    stack: DevStack, journey: Journey, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIKENESS_GATEWAY_URL", stack.gateway_url)
    monkeypatch.setenv(
        "LIKENESS_TOKEN",
        stack.mint_token(tenant=TENANT, scopes=["subjects:read"], subject=journey.subject_id),
    )
    capsys.readouterr()
    assert main(["subjects", "summary", journey.subject_id, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["subject_id"] == journey.subject_id
    assert {c["name"] for c in printed["categories"]} >= {"photos", "models", "renders", "images", "consents"}
