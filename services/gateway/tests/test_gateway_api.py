"""Cross-cutting contract: error envelope, gRPC status mapping, headers, health, metrics, logs, OpenAPI."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import grpc
import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.errors import from_grpc
from gateway.middleware import RequestIdLogFilter, is_streaming
from likeness.telemetry import JsonFormatter

BOUNDARY = "likeness-test-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def assert_envelope(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["request_id"] == response.headers["X-Request-Id"]
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]


async def test_unknown_routes_answer_the_envelope(client, auth) -> None:
    assert_envelope(await client.get("/v2/nothing"), 404, "not_found")
    assert_envelope(await client.put("/v1/subjects", headers=auth()), 405, "method_not_allowed")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"consent": {"purpose": "", "policy_version": "1"}},
        {"consent": {"purpose": "x", "policy_version": "1"}, "unexpected": True},
        "not an object",
    ],
)
async def test_validation_errors_are_invalid_request_with_a_readable_message(client, auth, body) -> None:
    response = await client.post("/v1/subjects", json=body, headers=auth())
    assert_envelope(response, 422, "invalid_request")
    assert response.json()["error"]["message"].startswith("Invalid request: ")


async def test_a_body_that_is_not_json_is_invalid_request(client, auth) -> None:
    response = await client.post(
        "/v1/subjects", content=b"{nope", headers={**auth(), "Content-Type": "application/json"}
    )
    assert_envelope(response, 422, "invalid_request")


def rpc_error(status: grpc.StatusCode, code: str | None = None, details: str = "said the service") -> Any:
    trailing = grpc.aio.Metadata(("likeness-error-code", code)) if code else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(status, grpc.aio.Metadata(), trailing, details, None)


@pytest.mark.parametrize(
    ("status", "http", "default_code"),
    [
        (grpc.StatusCode.NOT_FOUND, 404, "not_found"),
        (grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_argument"),
        (grpc.StatusCode.FAILED_PRECONDITION, 409, "failed_precondition"),
        (grpc.StatusCode.ALREADY_EXISTS, 409, "already_exists"),
        (grpc.StatusCode.PERMISSION_DENIED, 403, "permission_denied"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "resource_exhausted"),
    ],
)
def test_grpc_client_errors_map_to_http_with_the_service_code(status, http, default_code) -> None:
    mapped = from_grpc(rpc_error(status, "service_code"))
    assert (mapped.status, mapped.code, mapped.message) == (http, "service_code", "said the service")
    assert from_grpc(rpc_error(status)).code == default_code


@pytest.mark.parametrize("status", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_unavailable_backends_are_503_without_their_details(status) -> None:
    mapped = from_grpc(rpc_error(status, "vault_down", details="vault at 10.0.0.7 refused"))
    assert (mapped.status, mapped.code) == (503, "unavailable")
    assert "10.0.0.7" not in mapped.message


@pytest.mark.parametrize("code", ["storage_full", "audit_trail_full"])
def test_a_write_refused_by_a_full_stream_is_503_with_its_own_code(code) -> None:
    """Issue 18: a full stream or bucket (DiscardNew) is not a backend that is down: the client and the
    operator read which bound refused the write, and nothing of the backend's words."""
    mapped = from_grpc(rpc_error(grpc.StatusCode.UNAVAILABLE, code, details="KV_photos at 10.0.0.7"))
    assert (mapped.status, mapped.code) == (503, code)
    assert mapped.headers == {"Retry-After": "60"}
    assert "10.0.0.7" not in mapped.message
    assert "full" in mapped.message


@pytest.mark.parametrize(
    "status",
    [
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.DATA_LOSS,
    ],
)
def test_other_grpc_errors_are_internal_without_details(status) -> None:
    mapped = from_grpc(rpc_error(status, "leaky_code", details="stack trace with secrets"))
    assert (mapped.status, mapped.code) == (500, "internal")
    assert "secrets" not in mapped.message


def test_an_answer_grpc_lost_to_a_late_write_is_a_retryable_503() -> None:
    """grpc.aio's INTERNAL for a backend that ended an upload mid-write (likeness.rpc_errors) is not a
    fault of ours: the client is told to retry, where it gets the backend's real answer."""
    late_write = 'Failed "execute_batch": (<grpc._cython.cygrpc.SendMessageOperation object at 0x1>,)'
    lost = grpc.aio.AioRpcError(
        grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(), "Internal error", late_write
    )
    mapped = from_grpc(lost)
    assert (mapped.status, mapped.code) == (503, "unavailable")


@pytest.mark.parametrize(
    ("status", "http", "code"),
    [
        (grpc.StatusCode.PERMISSION_DENIED, 403, "tenant_suspended"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "quota_exceeded"),
        (grpc.StatusCode.UNAVAILABLE, 503, "unavailable"),
        (grpc.StatusCode.UNKNOWN, 500, "internal"),  # the servicer raised: its message must not leak
    ],
)
async def test_backend_failures_reach_the_client_as_envelopes(
    client, auth, new_subject, fakes, status, http, code
):
    subject = await new_subject()
    fakes.retention.failures[subject] = (status, code)
    try:
        response = await client.get(f"/v1/subjects/{subject}", headers=auth())
    finally:
        del fakes.retention.failures[subject]
    assert_envelope(response, http, code)
    assert "must never see" not in response.text
    assert response.headers["X-Request-Id"]


async def test_a_backend_that_is_down_answers_503(make_client, auth) -> None:
    async with make_client(retention_addr="127.0.0.1:9", grpc_timeout_seconds=2) as down:
        response = await down.get("/v1/subjects/sub_01jbz3k7q8m2x4v6n9p0r5t7wy", headers=auth())
        assert_envelope(response, 503, "unavailable")
        ready = await down.get("/readyz")
        assert_envelope(ready, 503, "not_ready")
        assert "retention" in ready.json()["error"]["message"]


async def test_an_unexpected_exception_answers_internal_with_the_usual_headers(fakes) -> None:
    settings = GatewaySettings(
        jwt_dev_secret="x" * 40, retention_addr=fakes.addresses["retention"], tls_dir=fakes.gateway_tls_dir
    )
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("an internal detail")

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as raw:
            response = await raw.get("/boom")
    assert_envelope(response, 500, "internal")
    assert "internal detail" not in response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Request-Id"]


async def test_every_response_is_uncached_and_carries_a_request_id(client, auth, shared_world) -> None:
    responses = [
        await client.get("/healthz"),
        await client.get("/nowhere"),
        await client.get(f"/v1/subjects/{shared_world.subject}", headers=auth()),
        await client.get(f"/v1/subjects/{shared_world.subject}"),
        await client.get(f"/v1/renders/{shared_world.render}/images/{shared_world.image}", headers=auth()),
    ]
    ids = set()
    for response in responses:
        assert response.headers["Cache-Control"] == "no-store"
        ids.add(response.headers["X-Request-Id"])
    assert len(ids) == len(responses)


async def test_a_sane_request_id_is_kept_and_an_odd_one_replaced(client) -> None:
    kept = await client.get("/healthz", headers={"X-Request-Id": "req-0123456789"})
    assert kept.headers["X-Request-Id"] == "req-0123456789"
    replaced = await client.get("/healthz", headers={"X-Request-Id": "<script>alert(1)</script>"})
    assert "script" not in replaced.headers["X-Request-Id"]
    assert len(replaced.headers["X-Request-Id"]) == 32


async def test_health_and_readiness(client, fakes) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["backends"] == {
        "retention": True,
        "ingest": True,
        "trainer": True,
        "renderer": True,
        "nats": True,
    }
    await fakes.set_serving("trainer", False)
    try:
        not_ready = await client.get("/readyz")
    finally:
        await fakes.set_serving("trainer", True)
    assert_envelope(not_ready, 503, "not_ready")
    assert "trainer" in not_ready.json()["error"]["message"]


async def test_metrics_count_route_templates_never_ids(client, auth, shared_world) -> None:
    await client.get(f"/v1/subjects/{shared_world.subject}", headers=auth())
    await client.get("/v1/subjects/sub_01jbz3k7q8m2x4v6n9p0r5t7wy/nothing-here")
    # Served on the metrics port only, never on the public API port.
    assert (await client.get("/metrics")).status_code == 404
    port = client.app.state.metrics_listener.port
    async with httpx.AsyncClient() as scraper:
        response = await scraper.get(f"http://127.0.0.1:{port}/metrics")
        assert (await scraper.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    assert response.status_code == 200
    text = response.text
    assert 'route="/v1/subjects/{subject_id}",status="200"' in text
    assert 'route="unmatched"' in text
    assert "likeness_gateway_request_duration_seconds_bucket" in text
    assert "sub_" not in text
    assert "acme" not in text


async def test_log_lines_carry_the_request_id_and_nothing_personal(
    client, auth, new_subject, multipart
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("gateway"))
    handler.addFilter(RequestIdLogFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        subject = await new_subject()
        response = await client.post(
            f"/v1/subjects/{subject}/photos",
            content=multipart([("anna-smith-selfie.jpg", b"\xff\xd8\xff\xe0pixels")]),
            headers={**auth(), **MULTIPART},
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    assert response.status_code == 200
    # The test client's own httpx log lines are not the gateway's (the gateway quiets httpx anyway).
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    lines = [line for line in lines if line["logger"] != "httpx"]
    access = [line for line in lines if line.get("route") == "/v1/subjects/{subject_id}/photos"]
    assert access
    assert access[-1]["request_id"] == response.headers["X-Request-Id"]
    assert access[-1]["status"] == 200
    text = json.dumps(lines)
    assert subject not in text
    assert "anna-smith" not in text
    assert "pixels" not in text


def test_openapi_documents_every_route_and_its_errors(client) -> None:
    app = create_app(GatewaySettings(jwt_dev_secret="x" * 40))
    schema = app.openapi()
    documented = {
        (method.upper(), path) for path, operations in schema["paths"].items() for method in operations
    }
    routes = {
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
        for method in route.methods or ()
    }
    assert routes == documented
    expected = {
        ("POST", "/v1/subjects"),
        ("GET", "/v1/subjects/{subject_id}"),
        ("DELETE", "/v1/subjects/{subject_id}"),
        ("POST", "/v1/subjects/{subject_id}/photos"),
        ("GET", "/v1/subjects/{subject_id}/photos"),
        ("POST", "/v1/subjects/{subject_id}/trainings"),
        ("GET", "/v1/trainings/{training_id}"),
        ("POST", "/v1/trainings/{training_id}/cancel"),
        ("POST", "/v1/subjects/{subject_id}/renders"),
        ("GET", "/v1/renders/{render_id}"),
        ("GET", "/v1/renders/{render_id}/images/{image_id}"),
        ("DELETE", "/v1/renders/{render_id}/images/{image_id}"),
        ("GET", "/v1/styles"),
        ("GET", "/v1/erasures/{erasure_id}"),
        ("GET", "/v1/subjects"),
        ("GET", "/v1/subjects/{subject_id}/trainings"),
        ("GET", "/v1/subjects/{subject_id}/renders"),
        ("GET", "/v1/trainings/{training_id}/events"),
        ("GET", "/v1/renders/{render_id}/events"),
        ("GET", "/v1/retention-policy"),
        ("PUT", "/v1/retention-policy"),
        ("GET", "/v1/erasures/{erasure_id}/receipt"),
        ("GET", "/v1/receipt-keys"),
        ("GET", "/v1/team-looks"),
        ("GET", "/v1/team-looks/{look_id}"),
        ("PUT", "/v1/team-looks/{look_id}"),
        ("DELETE", "/v1/team-looks/{look_id}"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
    }
    assert expected <= documented
    envelope_ref = "#/components/schemas/ErrorResponse"
    for method, path in expected:
        operation = schema["paths"][path][method.lower()]
        errors = {status: body for status, body in operation["responses"].items() if int(status) >= 400}
        if path.startswith("/v1/") and path != "/v1/receipt-keys":
            assert {"401", "403", "429", "500", "503"} <= set(errors), (method, path)
            # The request deadline (504) is not applied to what streams at the client's pace.
            assert ("504" in errors) is not is_streaming(method, path), (method, path)
            [requirement] = operation["security"]
            assert list(requirement) == ["HTTPBearer"]
            assert len(requirement["HTTPBearer"]) == 1
        for status, body in errors.items():
            if (method, path) == ("POST", "/v1/subjects/{subject_id}/photos") and status in {
                "413",
                "415",
                "422",
            }:
                # Every photo rejected: the envelope plus every verdict; or a refusal of the request itself.
                rejected = schema["components"]["schemas"]["RejectedUpload"]
                options = body["content"]["application/json"]["schema"]["anyOf"]
                assert [option["$ref"].rsplit("/", 1)[1] for option in options] == [
                    "RejectedUpload",
                    "ErrorResponse",
                ]
                assert rejected["properties"]["error"]["$ref"].endswith("/ErrorBody")
                continue
            assert body["content"]["application/json"]["schema"]["$ref"] == envelope_ref, (
                method,
                path,
                status,
            )
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    upload = schema["paths"]["/v1/subjects/{subject_id}/photos"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"413", "415"} <= set(upload["responses"])
    assert schema["components"]["schemas"]["Subject"]["examples"]
