"""Every route of the gateway, on the real stack, against every kind of wrong token: none, expired, wrong
issuer, wrong audience, missing scope, another tenant's, another subject's, and a tenant token without
`sub` and without `tenant:all` (which may touch no subject: only the tenant-level routes serve it). Each
answers 401, 403 or 404 as designed, and no refusal carries any of the resources' data.

Routes are enumerated from the application itself and their scopes read from the live OpenAPI schema, so
a new route cannot be forgotten: one without a plan here fails the test.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from gateway.app import create_app
from gateway.config import GatewaySettings
from likeness.user_tokens import TENANT_WIDE_SCOPE
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_dev.tokens import ALL_SCOPES, DEV_AUDIENCE, DEV_ISSUER

SCOPES = (*ALL_SCOPES, "retention:read", "retention:write", "looks:read", "looks:write")
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/v1/receipt-keys")}
#: Routes that are the tenant's business, not an end user's: an end-user token gets 403 there.
TENANT_ONLY = {
    ("GET", "/v1/subjects"),
    ("POST", "/v1/subjects"),
    ("GET", "/v1/retention-policy"),
    ("PUT", "/v1/retention-policy"),
    ("GET", "/v1/consent-policy"),
    ("PUT", "/v1/consent-policy"),
    ("PUT", "/v1/team-looks/{look_id}"),
    ("DELETE", "/v1/team-looks/{look_id}"),
    # The tenant's audit trail (`audit:read`): the person reads their own log, not the tenant's trail.
    ("GET", "/v1/audit"),
    # The tenant's quotas and usage (`usage:read`): an operator's view.
    ("GET", "/v1/usage"),
}
#: Routes that name no subject: a token without `sub` and without `tenant:all` may use them (the gateway's
#: `deps.TENANT_LEVEL_ROUTES`); every other route answers it 403 `insufficient_scope` (scope tenant:all).
TENANT_LEVEL = {
    ("POST", "/v1/subjects"),
    ("GET", "/v1/styles"),
    ("GET", "/v1/retention-policy"),
    ("PUT", "/v1/retention-policy"),
    ("GET", "/v1/consent-policy"),
    ("PUT", "/v1/consent-policy"),
    ("GET", "/v1/team-looks"),
    ("GET", "/v1/team-looks/{look_id}"),
    ("PUT", "/v1/team-looks/{look_id}"),
    ("DELETE", "/v1/team-looks/{look_id}"),
}
#: Path parameters that name a resource of one subject (another tenant or subject must get 404).
OWNED_PARAMS = {"subject_id", "photo_id", "training_id", "render_id", "image_id", "erasure_id"}
LOOK = "authz-look"


@dataclass(frozen=True)
class World:
    tenant: str
    subject: str
    other_subject: str
    training: str
    render: str
    image: str
    erasure: str
    photo: str

    def ids(self) -> list[str]:
        return [self.subject, self.training, self.render, self.image, self.erasure, self.photo]


def _wait(client: httpx.Client, path: str, timeout: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, Any] = client.get(path).json()
        if record.get("status") in {"succeeded", "failed", "cancelled", "completed"}:
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.5)


@pytest.fixture(scope="module")
def world(stack: DevStack) -> Iterator[World]:
    tenant = f"authz-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {stack.mint_token(tenant=tenant, scopes=SCOPES)}"}
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=60) as client:
        consent = {"consent": {"purpose": "headshots", "policy_version": "2026-01"}}
        subject, other, erased = (client.post("/v1/subjects", json=consent).json()["id"] for _ in range(3))
        files = [("file", (name, data, "image/jpeg")) for name, data in sample_photos(2)]
        uploaded = client.post(f"/v1/subjects/{subject}/photos", files=files)
        assert uploaded.status_code == 200, uploaded.text
        training = client.post(f"/v1/subjects/{subject}/trainings", json={}).json()["id"]
        assert _wait(client, f"/v1/trainings/{training}")["status"] == "succeeded"
        body = {"training_id": training, "styles": ["linkedin"], "images_per_style": 1, "seed": 1}
        render = client.post(f"/v1/subjects/{subject}/renders", json=body).json()["id"]
        finished = _wait(client, f"/v1/renders/{render}")
        assert finished["status"] == "succeeded", finished
        look = {"name": "Authz", "style": "linkedin", "background": "light_gray", "seed_policy": "fixed"}
        assert client.put(f"/v1/team-looks/{LOOK}", json=look).status_code == 200
        erasure = client.delete(f"/v1/subjects/{erased}").json()["erasure_id"]
        _wait(client, f"/v1/erasures/{erasure}")
        photo = uploaded.json()["photos"][0]["id"]
        yield World(tenant, subject, other, training, render, finished["images"][0]["id"], erasure, photo)


def _routes() -> list[tuple[str, str]]:
    app = create_app(GatewaySettings(jwt_dev_secret="x" * 40))
    return sorted(
        (method, route.path)
        for route in iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute)
        for method in route.methods or ()
    )


ROUTES = _routes()


def _url(path: str, world: World) -> str:
    values = {
        "subject_id": world.subject,
        "training_id": world.training,
        "render_id": world.render,
        "image_id": world.image,
        "erasure_id": world.erasure,
        "photo_id": world.photo,
        "look_id": LOOK,
    }
    return re.sub(r"\{(\w+)\}", lambda match: values[match.group(1)], path)


def _body(method: str, path: str, world: World) -> dict[str, Any]:
    if path.endswith("/photos") and method == "POST":
        return {"files": [("file", ("a.jpg", sample_photos(1)[0][1], "image/jpeg"))]}
    if path == "/v1/subjects" and method == "POST":
        return {"json": {"consent": {"purpose": "headshots", "policy_version": "1"}}}
    if path.endswith("/renders") and method == "POST":
        return {"json": {"training_id": world.training, "styles": ["linkedin"], "images_per_style": 1}}
    if path.endswith("/trainings") and method == "POST":
        return {"json": {}}
    if path.endswith("/consents") and method == "POST":
        return {"json": {"purpose": "instant", "policy_version": "1"}}
    if path.endswith("/consents") and method == "DELETE":
        return {"params": {"purpose": "instant"}}
    if path == "/v1/consent-policy" and method == "PUT":
        return {"json": {"grants_need_subject_token": False, "erase_on_withdrawal": False}}
    if path == "/v1/subjects/{subject_id}" and method == "PATCH":
        return {"json": {"external_ref": "authz-ref"}}
    if path == "/v1/retention-policy" and method == "PUT":
        return {"json": {"photos_days": 10}}
    if path.startswith("/v1/team-looks/") and method == "PUT":
        return {"json": {"name": "x", "style": "linkedin", "background": "light_gray"}}
    return {}


def _token(stack: DevStack, **changes: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "tenant": changes.pop("tenant"),
        "scope": " ".join(changes.pop("scopes", SCOPES)),
        "iat": now,
        "exp": now + 600,
    }
    claims.update(changes)
    return jwt.encode(claims, stack.jwt_secret, algorithm="HS256")


@pytest.fixture(scope="module")
def schema_scopes(stack: DevStack) -> dict[tuple[str, str], list[str]]:
    schema = httpx.get(f"{stack.gateway_url}/openapi.json", timeout=10).json()
    scopes = {}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            security = operation.get("security") or [{}]
            scopes[(method.upper(), path)] = security[0].get("HTTPBearer", [])
    return scopes


def test_the_live_schema_lists_exactly_the_routes_of_the_app(schema_scopes) -> None:
    assert set(schema_scopes) == set(ROUTES)
    for route in ROUTES:
        assert route in PUBLIC or len(schema_scopes[route]) == 1, route


def _assert_refused(response: httpx.Response, status: int, world: World, label: str) -> None:
    assert response.status_code == status, (label, response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"error"}, label
    assert set(body["error"]) == {"code", "message", "request_id"}, label
    for value in world.ids():
        assert value not in response.text, (label, value)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_route_refuses_every_wrong_token(
    stack: DevStack, world: World, schema_scopes, method, path
) -> None:
    if (method, path) in PUBLIC:
        return
    [scope] = schema_scopes[(method, path)]
    url = _url(path, world)
    now = int(time.time())
    tokens = {
        "none": None,
        "expired": _token(stack, tenant=world.tenant, iat=now - 7200, exp=now - 3600),
        "wrong issuer": _token(stack, tenant=world.tenant, iss="https://someone-else.example"),
        "wrong audience": _token(stack, tenant=world.tenant, aud="another-api"),
        "bad signature": _token(stack, tenant=world.tenant)[:-4] + "AAAA",
    }
    with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
        for label, token in tokens.items():
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            response = client.request(method, url, headers=headers, **_body(method, path, world))
            _assert_refused(response, 401, world, label)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")

        missing = _token(stack, tenant=world.tenant, scopes=[s for s in SCOPES if s != scope])
        response = client.request(
            method, url, headers={"Authorization": f"Bearer {missing}"}, **_body(method, path, world)
        )
        _assert_refused(response, 403, world, "missing scope")
        assert response.json()["error"]["code"] == "insufficient_scope"

        # Another tenant's look id is its own namespace: a PUT there creates that tenant's look.
        look = path.startswith("/v1/team-looks/") and method != "PUT"
        owned = bool(OWNED_PARAMS & set(re.findall(r"\{(\w+)\}", path))) or look
        other_tenant = _token(stack, tenant=f"other-{uuid.uuid4().hex[:6]}")
        if owned:
            response = client.request(
                method, url, headers={"Authorization": f"Bearer {other_tenant}"}, **_body(method, path, world)
            )
            _assert_refused(response, 404, world, "other tenant")
        elif method == "GET":
            response = client.get(url, headers={"Authorization": f"Bearer {other_tenant}"})
            assert response.status_code == 200, response.text
            for value in world.ids():
                assert value not in response.text

        narrow = _token(stack, tenant=world.tenant, scopes=[s for s in SCOPES if s != TENANT_WIDE_SCOPE])
        headers = {"Authorization": f"Bearer {narrow}"}
        if (method, path) not in TENANT_LEVEL:
            response = client.request(method, url, headers=headers, **_body(method, path, world))
            _assert_refused(response, 403, world, "no sub, no tenant:all")
            assert response.json()["error"]["code"] == "insufficient_scope"
            assert f'scope="{TENANT_WIDE_SCOPE}"' in response.headers["WWW-Authenticate"]
        elif method == "GET":
            response = client.get(url, headers=headers)
            assert response.status_code == 200, response.text
            for value in world.ids():
                assert value not in response.text

        other_subject = _token(stack, tenant=world.tenant, sub=world.other_subject)
        headers = {"Authorization": f"Bearer {other_subject}"}
        if (method, path) in TENANT_ONLY:
            response = client.request(method, url, headers=headers, **_body(method, path, world))
            _assert_refused(response, 403, world, "end-user token on a tenant route")
        elif bool(OWNED_PARAMS & set(re.findall(r"\{(\w+)\}", path))):
            response = client.request(method, url, headers=headers, **_body(method, path, world))
            _assert_refused(response, 404, world, "other subject")
        elif method == "GET":
            response = client.get(url, headers=headers)
            assert response.status_code == 200, response.text
            for value in world.ids():
                assert value not in response.text


def test_the_rightful_owner_still_gets_everything(stack: DevStack, world: World) -> None:
    """The refusals above are not a gateway that refuses everyone."""
    headers = {"Authorization": f"Bearer {stack.mint_token(tenant=world.tenant, scopes=SCOPES)}"}
    with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=30) as client:
        assert client.get(f"/v1/subjects/{world.subject}").status_code == 200
        assert client.get(f"/v1/trainings/{world.training}").status_code == 200
        assert client.get(f"/v1/renders/{world.render}/images/{world.image}").status_code == 200
        assert client.get(f"/v1/erasures/{world.erasure}/receipt").status_code == 200
        listed = client.get("/v1/subjects").json()["subjects"]
        assert world.subject in [subject["id"] for subject in listed]
    end_user = stack.mint_token(tenant=world.tenant, scopes=SCOPES, subject=world.subject)
    response = httpx.get(
        f"{stack.gateway_url}/v1/subjects/{world.subject}/trainings",
        headers={"Authorization": f"Bearer {end_user}"},
        timeout=30,
    )
    assert [training["id"] for training in response.json()["trainings"]] == [world.training]
