"""The schema says what the gateway really does: every answer documented with its headers, 405 naming every
method of the path, the upload's refusals matching their schema, schema-violating requests refused (and
nothing changed), cursors and ids as the schema states them, links that lead somewhere.

The live contract run (tests/test_gateway_schemathesis_e2e.py) tries all of it with schemathesis; these
pin each rule down one by one, against the gRPC doubles.
"""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import httpx
import jsonschema_rs
import pytest

from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.errors import from_grpc
from gateway.middleware import is_streaming
from likeness.rpc_errors import CODE_METADATA_KEY

BOUNDARY = "likeness-test-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
CONSENT = {"consent": {"purpose": "headshots", "policy_version": "2025-01"}}
JPEG = b"\xff\xd8\xff\xe0"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    document: dict[str, Any] = create_app(GatewaySettings(jwt_dev_secret="x" * 40)).openapi()
    return document


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def assert_documented(schema: dict[str, Any], method: str, path: str, response: httpx.Response) -> None:
    """The response's status is documented for the operation, and its JSON body matches that schema."""
    documented = schema["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in documented, (method, path, response.status_code, response.text)
    body_schema = documented[str(response.status_code)]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.Draft202012Validator({"components": schema["components"], **body_schema})
    assert validator.is_valid(response.json()), (method, path, response.text)


# 405: every method of the path


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/retention-policy", "GET, PUT"),
        ("OPTIONS", "/v1/subjects", "GET, POST"),
        ("PUT", "/v1/subjects/sub_01jbz3k7q8m2x4v6n9p0r5t7wy", "DELETE, GET, PATCH"),
        ("PATCH", "/v1/team-looks/sales-emea", "DELETE, GET, PUT"),
        ("DELETE", "/v1/subjects/sub_01jbz3k7q8m2x4v6n9p0r5t7wy/photos", "GET, POST"),
    ],
)
async def test_a_method_the_path_lacks_answers_405_naming_every_method_it_has(
    client, auth, method, path, allowed
) -> None:
    response = await client.request(method, path, headers=auth())
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["X-Request-Id"] == response.json()["error"]["request_id"]
    for name in allowed.split(", "):
        assert name in response.json()["error"]["message"]


async def test_a_path_that_does_not_exist_is_404_whatever_the_method(client) -> None:
    response = await client.request("DELETE", "/v1/nothing/here")
    assert response.status_code == 404
    assert "Allow" not in response.headers


# The upload's refusals match their schema


async def test_upload_refusals_with_and_without_verdicts_match_the_documented_bodies(
    client, auth, new_subject, multipart, schema
) -> None:
    subject = await new_subject()
    path = "/v1/subjects/{subject_id}/photos"
    headers = {**auth(), **MULTIPART, "Idempotency-Key": str(uuid.uuid4())}
    # Every photo rejected (not a photo at all): 415 with every verdict.
    rejected = await client.post(
        f"/v1/subjects/{subject}/photos", content=multipart([("notes.txt", b"not a photo")]), headers=headers
    )
    assert rejected.status_code == 415
    assert rejected.json()["photos"][0]["status"] == "rejected"
    assert_documented(schema, "POST", path, rejected)
    # The same key with other files: 422 `idempotency_key_reused`, the envelope alone (no verdicts).
    reused = await client.post(
        f"/v1/subjects/{subject}/photos", content=multipart([("me.jpg", JPEG + b"x")]), headers=headers
    )
    assert reused.status_code == 422
    assert set(reused.json()) == {"error"}
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert_documented(schema, "POST", path, reused)


def test_the_upload_schema_asks_for_at_least_one_file(schema) -> None:
    body = schema["paths"]["/v1/subjects/{subject_id}/photos"]["post"]["requestBody"]
    files = body["content"]["multipart/form-data"]["schema"]["properties"]["file"]
    assert files["minItems"] == 1


# Requests the schema refuses are refused, and change nothing


@pytest.mark.parametrize(
    "body",
    [
        {"inactivity_days": False},  # a boolean where the schema says integer
        {"photos_days": "30"},  # a string where the schema says integer
        {"photos_deleted_after_training": 0},  # a number where the schema says boolean
        {"photos_days": 1.5},
        {"photos_days": 30, "favourite_colour": "blue"},  # a field the schema does not name
    ],
    ids=["bool-for-int", "string-for-int", "int-for-bool", "fraction", "unknown-field"],
)
async def test_a_schema_violating_policy_is_refused_and_changes_nothing(client, auth, body) -> None:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    assert (
        await client.put("/v1/retention-policy", json={"photos_days": 7}, headers=auth(tenant=tenant))
    ).is_success
    response = await client.put("/v1/retention-policy", json=body, headers=auth(tenant=tenant))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    field = next(name for name in body if name != "photos_days") if len(body) > 1 else next(iter(body))
    assert field in response.json()["error"]["message"]
    policy = (await client.get("/v1/retention-policy", headers=auth(tenant=tenant))).json()
    assert policy["schedule"]["photos_days"] == 7
    assert policy["schedule"]["inactivity_days"] == 0


async def test_a_whole_number_written_with_a_fraction_part_is_an_integer(client, auth) -> None:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    response = await client.put(
        "/v1/retention-policy", json={"photos_days": 30.0}, headers=auth(tenant=tenant)
    )
    assert response.status_code == 200, response.text
    assert response.json()["schedule"]["photos_days"] == 30


@pytest.mark.parametrize("purpose", ["\x1f", " \t", "\ufeff", "\x85\xa0"])
async def test_a_blank_consent_is_refused_by_the_schema_before_any_subject_opens(
    client, auth, fakes, purpose
) -> None:
    opened = len(fakes.retention.opened)
    body = {"consent": {"purpose": purpose, "policy_version": "2025-01"}}
    response = await client.post("/v1/subjects", json=body, headers=auth())
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert len(fakes.retention.opened) == opened


@pytest.mark.parametrize(
    "body",
    [
        {"training_id": "trn_01jbz3p5b7d9f1h3k5m7q9s1vw", "styles": [], "team_look_id": None},
        {"training_id": "trn_01jbz3p5b7d9f1h3k5m7q9s1vw", "styles": ["corporate"], "seed": 2**53},
        {"training_id": "trn_01jbz3p5b7d9f1h3k5m7q9s1vw", "team_look_id": "Sales EMEA"},
        {"training_id": "trn_01jbz3p5b7d9f1h3k5m7q9s1vw", "styles": ["corporate"], "images_per_style": True},
    ],
    ids=["neither-styles-nor-look", "seed-beyond-2^53", "look-id-shape", "bool-for-int"],
)
async def test_render_requests_the_schema_refuses_are_refused(client, auth, world, fakes, body) -> None:
    submitted = len(fakes.renderer.submitted)
    response = await client.post(f"/v1/subjects/{world.subject}/renders", json=body, headers=auth())
    assert response.status_code == 422, response.text
    assert len(fakes.renderer.submitted) == submitted


def test_the_render_schema_states_the_styles_or_look_rule(schema) -> None:
    request = schema["components"]["schemas"]["CreateRenderRequest"]
    validator = jsonschema_rs.Draft202012Validator(request)
    assert validator.is_valid({"training_id": "trn_x", "styles": ["corporate"]})
    assert validator.is_valid({"training_id": "trn_x", "team_look_id": "sales-emea"})
    assert not validator.is_valid({"training_id": "trn_x"})
    assert not validator.is_valid({"training_id": "trn_x", "styles": [], "team_look_id": None})


# Cursors and other parameters as the schema states them


async def test_any_id_of_the_list_kind_is_a_cursor(client, auth, shared_world) -> None:
    newest_possible = "trn_zzzzzzzzzzzzzzzzzzzzzzzzzz"
    response = await client.get(
        f"/v1/subjects/{shared_world.subject}/trainings", params={"cursor": newest_possible}, headers=auth()
    )
    assert response.status_code == 200
    listed = [training["id"] for training in response.json()["trainings"]]
    assert {shared_world.training, shared_world.done_training} <= set(listed)


def test_cursors_and_keys_are_documented_as_accepted_and_never_null(schema) -> None:
    for method, path, operation in operations(schema):
        for parameter in operation.get("parameters", ()):
            assert "anyOf" not in parameter["schema"], (method, path, parameter["name"])
            if parameter["name"] == "cursor":
                assert parameter["schema"]["pattern"].startswith("^"), (method, path)
            if parameter["name"] == "Idempotency-Key":
                assert parameter["schema"]["maxLength"] == 255


# Every answer documented, with its headers


def test_every_answer_carries_the_request_id_and_no_store(schema) -> None:
    headers = schema["components"]["headers"]
    for method, path, operation in operations(schema):
        for status, response in operation["responses"].items():
            names = {name: ref["$ref"].rsplit("/", 1)[1] for name, ref in response["headers"].items()}
            assert names["X-Request-Id"] == "RequestId", (method, path, status)
            assert names["Cache-Control"] == "NoStore", (method, path, status)
            if status in {"429", "503"}:
                assert headers[names["Retry-After"]]["required"] is True, (method, path, status)
            if status == "401":
                assert headers[names["WWW-Authenticate"]]["required"] is True, (method, path)
            if int(status) >= 400:
                assert "- `" in response["description"], (method, path, status)


def test_authenticated_idempotent_and_paged_routes_document_what_their_machinery_answers(schema) -> None:
    for method, path, operation in operations(schema):
        statuses = set(operation["responses"])
        parameters = {parameter["name"] for parameter in operation.get("parameters", ())}
        if operation.get("security"):
            assert {"401", "403", "429", "500", "503"} <= statuses, (method, path)
            assert "`unauthenticated`" in operation["responses"]["401"]["description"]
        if "Idempotency-Key" in parameters:
            for status, code in (("400", "invalid_idempotency_key"), ("409", "idempotency_in_progress")):
                assert f"`{code}`" in operation["responses"][status]["description"], (method, path)
            assert "`idempotency_key_reused`" in operation["responses"]["422"]["description"], (method, path)
        if "cursor" in parameters:
            assert "`invalid_cursor`" in operation["responses"]["400"]["description"], (method, path)
        assert ("504" in statuses) is not is_streaming(method, path), (method, path)


def test_created_and_started_resources_document_their_location(schema) -> None:
    for method, path, status in [
        ("post", "/v1/subjects", "201"),
        ("post", "/v1/subjects/{subject_id}/trainings", "202"),
        ("post", "/v1/subjects/{subject_id}/renders", "202"),
        ("delete", "/v1/subjects/{subject_id}", "202"),
    ]:
        assert "Location" in schema["paths"][path][method]["responses"][status]["headers"], (method, path)


async def test_live_answers_carry_the_documented_headers(client, auth, schema, new_subject) -> None:
    created = await client.post("/v1/subjects", json=CONSENT, headers=auth())
    assert created.headers["Location"] == f"/v1/subjects/{created.json()['id']}"
    assert created.headers["Cache-Control"] == "no-store"
    assert_documented(schema, "POST", "/v1/subjects", created)
    refused = await client.get("/v1/subjects")
    assert refused.headers["WWW-Authenticate"].startswith("Bearer ")
    assert_documented(schema, "GET", "/v1/subjects", refused)


def test_links_lead_to_operations_that_take_what_they_pass(schema) -> None:
    by_id = {operation["operationId"]: (path, operation) for _, path, operation in operations(schema)}
    linked = set()
    for method, path, operation in operations(schema):
        for status, response in operation["responses"].items():
            for name, link in response.get("links", {}).items():
                assert 200 <= int(status) < 300, (method, path, name)
                target_path, target = by_id[link["operationId"]]
                names = {parameter["name"] for parameter in target.get("parameters", ())}
                assert set(link["parameters"]) <= names, (method, path, name)
                if "requestBody" in link:
                    assert "requestBody" in target, (method, path, name)
                linked.add(target_path)
    # The walk reaches trainings, renders, their images, erasure receipts and team looks.
    for path in (
        "/v1/trainings/{training_id}",
        "/v1/renders/{render_id}/images/{image_id}",
        "/v1/erasures/{erasure_id}/receipt",
        "/v1/team-looks/{look_id}",
        "/v1/subjects/{subject_id}/renders",
    ):
        assert path in linked, path


def test_event_streams_document_each_event(schema) -> None:
    for path, resource in (
        ("/v1/trainings/{training_id}/events", "Training"),
        ("/v1/renders/{render_id}/events", "Render"),
    ):
        event = schema["paths"][path]["get"]["responses"]["200"]["content"]["text/event-stream"]["schema"]
        kinds = {option["properties"]["event"]["const"]: option for option in event["oneOf"]}
        assert set(kinds) == {"progress", "end", "error"}
        data = kinds["end"]["properties"]["data"]
        assert data["contentSchema"]["$ref"] == f"#/components/schemas/{resource}"


# A conflict with a team look's current state


def test_a_render_contradicting_its_team_look_is_a_conflict() -> None:
    error = grpc.aio.AioRpcError(
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.aio.Metadata(),
        grpc.aio.Metadata((CODE_METADATA_KEY, "team_look_conflict")),
        "A render with a team look takes the look's style only.",
        None,
    )
    mapped = from_grpc(error)
    assert (mapped.status, mapped.code) == (409, "team_look_conflict")
