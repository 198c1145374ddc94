"""Subjects, trainings, renders, images and erasure through the gateway: the flow and its error codes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.config import GatewaySettings
from likeness.v1 import common_pb2, ingest_pb2, renderer_pb2
from likeness_dev.tokens import ALL_SCOPES, mint_dev_token

BOUNDARY = "likeness-test-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def error_code(response: Any) -> str:
    assert set(response.json()) == {"error"}, response.text
    code: str = response.json()["error"]["code"]
    return code


def assert_iso(value: str) -> None:
    assert ISO_UTC.match(value), value
    datetime.fromisoformat(value)


async def test_opening_and_reading_a_subject(client, auth, fakes) -> None:
    body = {"external_ref": "user-4711", "consent": {"purpose": "headshots", "policy_version": "2025-01"}}
    response = await client.post("/v1/subjects", json=body, headers=auth())
    assert response.status_code == 201, response.text
    subject = response.json()
    assert subject["id"].startswith("sub_")
    assert subject["status"] == "active"
    assert response.headers["Location"] == f"/v1/subjects/{subject['id']}"
    assert_iso(subject["created_at"])
    assert subject["retention"]["photos_days"] == 30
    assert subject["consent"]["policy_version"] == "2025-01"
    opened = fakes.retention.opened[-1]
    assert (opened.tenant, opened.external_ref, opened.consent.purpose) == ("acme", "user-4711", "headshots")
    assert opened.consent.HasField("given_at")

    read = await client.get(f"/v1/subjects/{subject['id']}", headers=auth())
    assert read.status_code == 200
    assert read.json() == subject


async def test_training_needs_accepted_photos(client, auth, new_subject, multipart, fakes) -> None:
    subject = await new_subject()
    response = await client.post(f"/v1/subjects/{subject}/trainings", headers=auth())
    assert response.status_code == 409
    assert error_code(response) == "no_accepted_photos"

    await client.post(
        f"/v1/subjects/{subject}/photos",
        content=multipart([("x.txt", b"text")]),
        headers={**auth(), **MULTIPART},
    )
    response = await client.post(f"/v1/subjects/{subject}/trainings", json={}, headers=auth())
    assert response.status_code == 409
    assert error_code(response) == "no_accepted_photos"


async def test_training_submits_only_accepted_photos(client, auth, new_subject, multipart, fakes) -> None:
    subject = await new_subject()
    files = [("a.jpg", b"\xff\xd8\xff\xe0a"), ("b.txt", b"text"), ("c.jpg", b"\xff\xd8\xff\xe0c")]
    uploaded = await client.post(
        f"/v1/subjects/{subject}/photos", content=multipart(files), headers={**auth(), **MULTIPART}
    )
    accepted = [p["id"] for p in uploaded.json()["photos"] if p["status"] == "accepted"]
    response = await client.post(f"/v1/subjects/{subject}/trainings", json={"steps": 300}, headers=auth())
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    training_id = response.json()["id"]
    assert response.headers["Location"] == f"/v1/trainings/{training_id}"
    submitted = fakes.trainer.submitted[-1]
    assert (submitted.tenant, submitted.subject_id, submitted.steps) == ("acme", subject, 300)
    assert list(submitted.photo_ids) == accepted

    training = (await client.get(f"/v1/trainings/{training_id}", headers=auth())).json()
    assert training["id"] == training_id
    assert training["subject_id"] == subject
    assert training["status"] == "queued"
    assert training["progress"] == {"step": 0, "total_steps": 300}
    assert training["error"] is None
    assert_iso(training["created_at"])
    assert_iso(training["updated_at"])


@pytest.mark.parametrize("steps", [0, 10001, "many"])
async def test_training_steps_are_validated(client, auth, world, steps) -> None:
    response = await client.post(
        f"/v1/subjects/{world.subject}/trainings", json={"steps": steps}, headers=auth()
    )
    assert response.status_code == 422
    assert error_code(response) == "invalid_request"
    assert "steps" in response.json()["error"]["message"]


async def test_cancelling_a_training(client, auth, world) -> None:
    response = await client.post(f"/v1/trainings/{world.training}/cancel", headers=auth())
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "cancelled"
    again = await client.post(f"/v1/trainings/{world.training}/cancel", headers=auth())
    assert again.status_code == 409
    assert error_code(again) == "training_finished"  # the service's own code is passed on


async def test_a_failed_training_reports_its_error(client, auth, world, fakes) -> None:
    record = fakes.trainer.trainings[("acme", world.training)]
    record.status = common_pb2.JOB_STATUS_FAILED
    record.error = "out of memory"
    training = (await client.get(f"/v1/trainings/{world.training}", headers=auth())).json()
    assert (training["status"], training["error"]) == ("failed", "out of memory")


async def test_rendering_requires_a_succeeded_training(client, auth, world) -> None:
    body = {"training_id": world.training, "styles": ["corporate"]}
    response = await client.post(f"/v1/subjects/{world.subject}/renders", json=body, headers=auth())
    assert response.status_code == 409
    assert error_code(response) == "training_not_ready"


async def test_rendering_requires_a_training_of_the_same_subject(client, auth, world, new_subject) -> None:
    other = await new_subject()
    body = {"training_id": world.done_training, "styles": ["corporate"]}
    response = await client.post(f"/v1/subjects/{other}/renders", json=body, headers=auth())
    assert response.status_code == 404
    assert error_code(response) == "training_not_found"


@pytest.mark.parametrize("training_id", ["trn_01jbz3p5b7d9f1h3k5m7q9s1vw", "not-an-id"])
async def test_rendering_from_an_unknown_training(client, auth, world, training_id) -> None:
    body = {"training_id": training_id, "styles": ["corporate"]}
    response = await client.post(f"/v1/subjects/{world.subject}/renders", json=body, headers=auth())
    assert response.status_code == 404
    assert error_code(response) == "training_not_found"


async def test_rendering_only_curated_styles(client, auth, world) -> None:
    body = {"training_id": world.done_training, "styles": ["corporate", "pirate_on_the_moon"]}
    response = await client.post(f"/v1/subjects/{world.subject}/renders", json=body, headers=auth())
    assert response.status_code == 400
    assert error_code(response) == "unknown_style"
    assert "pirate" in response.json()["error"]["message"]
    # What cannot even be a catalog id (a prompt, say) is refused by the schema before anything is asked.
    body["styles"] = ["a pirate on the moon"]
    response = await client.post(f"/v1/subjects/{world.subject}/renders", json=body, headers=auth())
    assert response.status_code == 422
    assert error_code(response) == "invalid_request"


@pytest.mark.parametrize(
    ("field", "value"), [("background", "moon"), ("outfit", "tuxedo"), ("lighting", "neon")]
)
async def test_an_unknown_catalog_choice_is_a_422_naming_it_before_the_renderer_is_asked(
    client, auth, world, fakes, field, value
) -> None:
    submitted = len(fakes.renderer.submitted)
    body = {"training_id": world.done_training, "styles": ["corporate"], field: value}
    response = await client.post(f"/v1/subjects/{world.subject}/renders", json=body, headers=auth())
    assert response.status_code == 422
    assert error_code(response) == "unknown_catalog_id"
    assert f"{field} {value!r}" in response.json()["error"]["message"]
    assert len(fakes.renderer.submitted) == submitted
    # Known ones go through to the renderer as given.
    body |= {"background": "brick_wall", "outfit": "navy_suit", "lighting": "rembrandt"}
    response = await client.post(f"/v1/subjects/{world.subject}/renders", json=body, headers=auth())
    assert response.status_code == 202, response.text
    sent = fakes.renderer.submitted[-1]
    assert (sent.background, sent.outfit, sent.lighting) == ("brick_wall", "navy_suit", "rembrandt")


@pytest.mark.parametrize(
    "body",
    [
        {"styles": ["corporate"]},
        {"training_id": "trn_01jbz3p5b7d9f1h3k5m7q9s1vw", "styles": []},
        {"training_id": "trn_01jbz3p5b7d9f1h3k5m7q9s1vw", "styles": ["corporate"] * 17},
        {"training_id": "trn_01jbz3p5b7d9f1h3k5m7q9s1vw", "styles": ["corporate"], "images_per_style": 9},
        {"training_id": "trn_01jbz3p5b7d9f1h3k5m7q9s1vw", "styles": ["corporate"], "prompt": "anything"},
        {"training_id": "trn_01jbz3p5b7d9f1h3k5m7q9s1vw", "styles": ["corporate"], "priority": "urgent"},
    ],
    ids=[
        "no-training",
        "no-styles",
        "too-many-styles",
        "too-many-images",
        "free-form-prompt",
        "bad-priority",
    ],
)
async def test_render_requests_are_validated(client, auth, world, body) -> None:
    response = await client.post(f"/v1/subjects/{world.subject}/renders", json=body, headers=auth())
    assert response.status_code == 422
    assert error_code(response) == "invalid_request"


async def test_submitting_a_render(client, auth, world, fakes) -> None:
    body = {"training_id": world.done_training, "styles": ["studio", "corporate", "studio"]}
    response = await client.post(f"/v1/subjects/{world.subject}/renders", json=body, headers=auth())
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    submitted = fakes.renderer.submitted[-1]
    assert list(submitted.styles) == ["studio", "corporate"]
    assert (submitted.images_per_style, submitted.HasField("seed")) == (2, False)

    body = {"training_id": world.done_training, "styles": ["studio"], "images_per_style": 3, "seed": 42}
    response = await client.post(f"/v1/subjects/{world.subject}/renders", json=body, headers=auth())
    assert response.status_code == 202
    assert (fakes.renderer.submitted[-1].images_per_style, fakes.renderer.submitted[-1].seed) == (3, 42)


@pytest.mark.parametrize(
    ("priority", "sent"),
    [
        (None, renderer_pb2.RENDER_PRIORITY_UNSPECIFIED),
        ("interactive", renderer_pb2.RENDER_PRIORITY_INTERACTIVE),
        ("bulk", renderer_pb2.RENDER_PRIORITY_BULK),
    ],
    ids=["absent-the-renderer-decides", "interactive", "bulk"],
)
async def test_a_renders_priority_reaches_the_renderer(client, auth, world, fakes, priority, sent) -> None:
    body = {"training_id": world.done_training, "styles": ["studio"]} | (
        {"priority": priority} if priority else {}
    )
    response = await client.post(f"/v1/subjects/{world.subject}/renders", json=body, headers=auth())
    assert response.status_code == 202, response.text
    assert fakes.renderer.submitted[-1].priority == sent


async def test_reading_a_render(client, auth, world) -> None:
    render = (await client.get(f"/v1/renders/{world.render}", headers=auth())).json()
    assert render["id"] == world.render
    assert (render["subject_id"], render["training_id"]) == (world.subject, world.done_training)
    assert render["status"] == "succeeded"
    assert render["images"] == [
        {
            "id": world.image,
            "style": "corporate",
            "seed": 7,
            "url": f"/v1/renders/{world.render}/images/{world.image}",
            "quality": None,  # the fake renderer's record has no gate scores
            "prompt_sha256": None,  # nor a prompt fingerprint
        }
    ]


async def test_images_stream_through_uncached(client, auth, world) -> None:
    response = await client.get(f"/v1/renders/{world.render}/images/{world.image}", headers=auth())
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.content == world.image_bytes
    assert len(world.image_bytes) > 3 * 64 * 1024  # it really came in several chunks


async def test_an_image_of_another_render_is_not_found(client, auth, world, fakes) -> None:
    response = await client.get(
        f"/v1/renders/{world.render}/images/img_01jbz3t1d3f5h7k9n1q3t5w7za", headers=auth()
    )
    assert response.status_code == 404
    assert error_code(response) == "not_found"


async def test_styles_are_listed(client, auth) -> None:
    response = await client.get("/v1/styles", headers=auth())
    assert response.status_code == 200
    assert response.json()["styles"][0] == {
        "id": "corporate",
        "name": "Corporate",
        "description": "Neutral grey backdrop",
    }


async def test_erasing_a_subject(client, auth, world, fakes) -> None:
    response = await client.delete(f"/v1/subjects/{world.subject}", headers=auth())
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["erasure_id"].startswith("era_")
    assert accepted["status"] == "pending"
    assert response.headers["Location"] == f"/v1/erasures/{accepted['erasure_id']}"

    receipt = (await client.get(f"/v1/erasures/{accepted['erasure_id']}", headers=auth())).json()
    assert set(receipt) == {
        "id",
        "tenant",
        "subject_hmac",
        "status",
        "cause",
        "key_name",
        "requested_at",
        "key_destroyed_at",
        "completed_at",
        "objects_deleted",
        "bytes_deleted",
        "records_deleted",
        "events_purged",
        "backups_expire_by",
        "last_error",
        "attempts",
    }
    assert (receipt["status"], receipt["cause"], receipt["attempts"]) == ("pending", "request", 1)
    assert_iso(receipt["requested_at"])
    assert receipt["key_destroyed_at"] is None
    assert receipt["completed_at"] is None


async def test_an_erased_subject_is_gone_everywhere(client, auth, world, multipart) -> None:
    await client.delete(f"/v1/subjects/{world.subject}", headers=auth())
    calls = [
        ("GET", f"/v1/subjects/{world.subject}", {}),
        ("GET", f"/v1/subjects/{world.subject}/photos", {}),
        ("POST", f"/v1/subjects/{world.subject}/trainings", {"json": {}}),
        (
            "POST",
            f"/v1/subjects/{world.subject}/renders",
            {"json": {"training_id": world.done_training, "styles": ["studio"]}},
        ),
        ("GET", f"/v1/trainings/{world.training}", {}),
        ("POST", f"/v1/trainings/{world.training}/cancel", {}),
        ("GET", f"/v1/renders/{world.render}", {}),
        ("GET", f"/v1/renders/{world.render}/images/{world.image}", {}),
    ]
    for method, url, arguments in calls:
        response = await client.request(method, url, headers=auth(), **arguments)
        assert response.status_code == 410, f"{method} {url}: {response.text}"
        assert error_code(response) == "subject_erased"


async def test_photos_listing_passes_the_verdicts(client, auth, world, fakes) -> None:
    photos = (await client.get(f"/v1/subjects/{world.subject}/photos", headers=auth())).json()["photos"]
    assert [p["id"] for p in photos] == [world.photo]
    assert photos[0]["status"] == "accepted"
    assert photos[0]["scores"] == {"sharpness": 0.9}
    assert fakes.ingest.photos[("acme", world.subject)][0].status == ingest_pb2.PHOTO_STATUS_ACCEPTED


# --- the minimum of accepted photos before a training -----------------------------------------------------

RULES_SECRET = "gateway-training-rules-secret-0123456789"


async def test_training_needs_the_configured_minimum_of_accepted_photos(multipart, fakes) -> None:
    settings = GatewaySettings(
        env="development",
        jwt_dev_secret=RULES_SECRET,
        retention_addr=fakes.addresses["retention"],
        ingest_addr=fakes.addresses["ingest"],
        trainer_addr=fakes.addresses["trainer"],
        renderer_addr=fakes.addresses["renderer"],
        tls_dir=fakes.gateway_tls_dir,
        min_photos_for_training=3,
    )
    headers = {"Authorization": f"Bearer {mint_dev_token(RULES_SECRET, 'acme', ALL_SCOPES)}"}
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            body = {"consent": {"purpose": "headshots", "policy_version": "2025-01"}}
            subject = (await client.post("/v1/subjects", json=body, headers=headers)).json()["id"]

            async def upload(*names: str) -> None:
                files = [(name, b"\xff\xd8\xff\xe0" + name.encode()) for name in names]
                response = await client.post(
                    f"/v1/subjects/{subject}/photos",
                    content=multipart(files),
                    headers={**headers, **MULTIPART},
                )
                assert response.status_code == 200, response.text

            await upload("a.jpg", "b.jpg")
            response = await client.post(f"/v1/subjects/{subject}/trainings", json={}, headers=headers)
            assert response.status_code == 409, response.text
            assert error_code(response) == "not_enough_photos"
            assert "at least 3 accepted photos" in response.json()["error"]["message"]
            assert "they have 2" in response.json()["error"]["message"]

            await upload("c.jpg")
            response = await client.post(f"/v1/subjects/{subject}/trainings", json={}, headers=headers)
            assert response.status_code == 202, response.text
            assert len(fakes.trainer.submitted[-1].photo_ids) == 3
