"""The authorization matrix: every route against every kind of token the gateway must refuse (or accept).

Three kinds of valid token: a tenant-wide one (no `sub`, scope `tenant:all`: every subject of its tenant),
an end user's (`sub`: that subject only) and a tenant token without either (only what names no subject:
opening subjects, the style catalog, the tenant's policies and looks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from likeness.ids import new_id
from likeness.user_tokens import TENANT_WIDE_SCOPE
from likeness_dev.tokens import ALL_SCOPES

OTHER_TENANT = "globex"
DEV_SECRET = "gateway-tests-secret-0123456789abcdef"  # the one conftest configures
BOUNDARY = "matrix-boundary"
ONE_PHOTO = (
    (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    + b"\xff\xd8\xff\xe0x\r\n"
    + f"--{BOUNDARY}--\r\n".encode()
)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str
    ok: int
    #: Whether the route reaches a resource of a subject (so other tenants and subjects must get a 404).
    owned: bool = True
    #: Whether it names no subject, so a token without `sub` and without `tenant:all` may use it.
    tenant_level: bool = False

    def url(self, world: Any) -> str:
        return self.path.format(
            sub=world.subject,
            trn=world.training,
            ren=world.render,
            img=world.image,
            era=world.erasure,
        )

    def body(self, world: Any) -> dict[str, Any]:
        if self.path.endswith("/photos") and self.method == "POST":
            content_type = f"multipart/form-data; boundary={BOUNDARY}"
            return {"content": ONE_PHOTO, "headers": {"Content-Type": content_type}}
        if self.path == "/v1/subjects":
            return {"json": {"consent": {"purpose": "headshots", "policy_version": "1"}}}
        if self.path.endswith("/renders"):
            return {"json": {"training_id": world.done_training, "styles": ["corporate"]}}
        if self.path.endswith("/trainings"):
            return {"json": {}}
        return {}


ROUTES = [
    Route("POST", "/v1/subjects", "subjects:write", 201, owned=False, tenant_level=True),
    Route("GET", "/v1/subjects", "subjects:read", 200, owned=False),
    Route("GET", "/v1/subjects/{sub}", "subjects:read", 200),
    Route("POST", "/v1/subjects/{sub}/photos", "photos:write", 200),
    Route("GET", "/v1/subjects/{sub}/photos", "photos:read", 200),
    Route("POST", "/v1/subjects/{sub}/trainings", "trainings:write", 202),
    Route("GET", "/v1/trainings/{trn}", "trainings:read", 200),
    Route("POST", "/v1/trainings/{trn}/cancel", "trainings:write", 202),
    Route("POST", "/v1/subjects/{sub}/renders", "renders:write", 202),
    Route("GET", "/v1/renders/{ren}", "renders:read", 200),
    Route("GET", "/v1/renders/{ren}/images/{img}", "renders:read", 200),
    Route("GET", "/v1/styles", "renders:read", 200, owned=False, tenant_level=True),
    Route("DELETE", "/v1/subjects/{sub}", "subjects:erase", 202),
    Route("GET", "/v1/erasures/{era}", "subjects:erase", 200),
]
OWNED = [route for route in ROUTES if route.owned]


def route_id(route: Route) -> str:
    return f"{route.method} {route.path}"


async def call(client: httpx.AsyncClient, route: Route, world: Any, token: str | None) -> httpx.Response:
    arguments = route.body(world)
    headers = dict(arguments.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await client.request(route.method, route.url(world), headers=headers, **arguments)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert response.json() == {
        "error": {"code": code, "message": error["message"], "request_id": response.headers["X-Request-Id"]}
    }
    assert response.json()["error"]["message"]


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_a_tenant_wide_token_with_the_scope_is_served(client, world, token, route) -> None:
    response = await call(client, route, world, token(scopes=[route.scope, TENANT_WIDE_SCOPE]))
    assert response.status_code == route.ok, response.text


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_a_token_without_sub_or_tenant_all_touches_no_subject(client, world, token, route) -> None:
    """No `sub` is no longer tenant-wide authority: it needs the explicit grant, asked for before anything
    is read (so the answer is the same whether the subject exists or not)."""
    response = await call(client, route, world, token(scopes=[route.scope]))
    if route.tenant_level:
        assert response.status_code == route.ok, response.text
        return
    assert_error(response, 403, "insufficient_scope")
    assert f'scope="{TENANT_WIDE_SCOPE}"' in response.headers["WWW-Authenticate"]
    for value in (world.subject, world.training, world.render, world.image, world.erasure):
        assert value not in response.text


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_no_token_is_unauthenticated(client, shared_world, route) -> None:
    response = await call(client, route, shared_world, None)
    assert_error(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
@pytest.mark.parametrize(
    "bad_token",
    [
        "not-a-jwt",
        "a.b.c",
        jwt.encode({"tenant": "acme"}, "x" * 32, algorithm="HS256"),  # no exp, iss, aud
        jwt.encode({"tenant": "acme", "scope": " ".join(ALL_SCOPES)}, None, algorithm="none"),
    ],
    ids=["garbage", "three-dots", "missing-claims", "alg-none"],
)
async def test_a_malformed_token_is_unauthenticated(client, shared_world, route, bad_token) -> None:
    response = await call(client, route, shared_world, bad_token)
    assert_error(response, 401, "unauthenticated")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_an_expired_token_is_unauthenticated(client, shared_world, token, route) -> None:
    response = await call(client, route, shared_world, token(ttl_seconds=-120))  # beyond the 30 s leeway
    assert_error(response, 401, "unauthenticated")
    assert "expired" in response.json()["error"]["message"]


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_a_token_with_a_wrong_signature_is_unauthenticated(client, shared_world, token, route) -> None:
    response = await call(client, route, shared_world, token(secret="another-secret-" + DEV_SECRET))
    assert_error(response, 401, "unauthenticated")


@pytest.mark.parametrize("route", ROUTES, ids=route_id)
async def test_a_token_without_the_route_scope_is_forbidden(client, shared_world, token, route) -> None:
    others = [scope for scope in ALL_SCOPES if scope != route.scope]
    response = await call(client, route, shared_world, token(scopes=others))
    assert_error(response, 403, "insufficient_scope")
    assert route.scope in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("route", OWNED, ids=route_id)
async def test_another_tenant_sees_nothing(client, shared_world, token, route, fakes) -> None:
    response = await call(client, route, shared_world, token(tenant=OTHER_TENANT))
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("route", OWNED, ids=route_id)
async def test_an_end_user_token_sees_nothing_of_another_subject(client, shared_world, token, route) -> None:
    response = await call(client, route, shared_world, token(subject=shared_world.other_subject))
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("route", OWNED, ids=route_id)
async def test_an_end_user_token_of_a_subject_unknown_anywhere_sees_nothing(
    client, shared_world, token, route
) -> None:
    response = await call(client, route, shared_world, token(subject=new_id("sub")))
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("route", [r for r in OWNED if "erasures" not in r.path], ids=route_id)
async def test_an_end_user_token_is_served_for_its_own_subject(client, world, token, route) -> None:
    response = await call(client, route, world, token(subject=world.subject))
    assert response.status_code == route.ok, response.text


async def test_an_end_user_can_read_the_receipt_of_their_own_erasure(client, world, token) -> None:
    response = await client.get(
        f"/v1/erasures/{world.erasure}",
        headers={"Authorization": f"Bearer {token(subject=world.erased_subject)}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == world.erasure


async def test_an_end_user_token_cannot_open_subjects(client, token) -> None:
    route = ROUTES[0]
    response = await client.post(
        route.path,
        json={"consent": {"purpose": "headshots", "policy_version": "1"}},
        headers={"Authorization": f"Bearer {token(subject=new_id('sub'))}"},
    )
    assert_error(response, 403, "insufficient_scope")


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/v1/subjects/{}", "sub"),
        ("/v1/subjects/{}/photos", "sub"),
        ("/v1/trainings/{}", "trn"),
        ("/v1/renders/{}", "ren"),
        ("/v1/erasures/{}", "era"),
    ],
)
@pytest.mark.parametrize(
    "bad_id", ["x", "sub_short", "SUB_01JBZ3K7Q8M2X4V6N9P0R5T7WY", "../etc", "era_" + "u" * 26]
)
async def test_malformed_path_ids_answer_not_found(client, auth, path, kind, bad_id) -> None:
    response = await client.get(path.format(bad_id), headers=auth())
    assert_error(response, 404, "not_found")


async def test_well_formed_ids_of_the_wrong_kind_answer_not_found(client, auth, shared_world) -> None:
    response = await client.get(f"/v1/trainings/{shared_world.render}", headers=auth())
    assert_error(response, 404, "not_found")
    response = await client.get(
        f"/v1/renders/{shared_world.render}/images/{shared_world.photo}", headers=auth()
    )
    assert_error(response, 404, "not_found")


async def test_a_token_naming_no_valid_tenant_is_unauthenticated(client) -> None:
    claims = {"iss": "likeness-dev", "aud": "likeness", "iat": 0, "exp": 2**40, "tenant": "Not A Tenant!"}
    bad = jwt.encode({**claims, "scope": "renders:read"}, DEV_SECRET, algorithm="HS256")
    response = await client.get("/v1/styles", headers={"Authorization": f"Bearer {bad}"})
    assert_error(response, 401, "unauthenticated")


async def test_a_token_whose_subject_is_no_subject_id_is_unauthenticated(client) -> None:
    claims = {"iss": "likeness-dev", "aud": "likeness", "iat": 0, "exp": 2**40, "tenant": "acme"}
    bad = jwt.encode({**claims, "scope": "renders:read", "sub": "alice"}, DEV_SECRET, algorithm="HS256")
    response = await client.get("/v1/styles", headers={"Authorization": f"Bearer {bad}"})
    assert_error(response, 401, "unauthenticated")


@pytest.mark.parametrize(("claim", "value"), [("iss", "someone-else"), ("aud", "another-api")])
async def test_a_token_for_another_issuer_or_audience_is_unauthenticated(client, claim, value) -> None:
    claims = {"iss": "likeness-dev", "aud": "likeness", "iat": 0, "exp": 2**40, "tenant": "acme"}
    bad = jwt.encode({**claims, "scope": "renders:read", claim: value}, DEV_SECRET, algorithm="HS256")
    response = await client.get("/v1/styles", headers={"Authorization": f"Bearer {bad}"})
    assert_error(response, 401, "unauthenticated")


async def test_a_non_bearer_authorization_is_unauthenticated(client) -> None:
    response = await client.get("/v1/styles", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert_error(response, 401, "unauthenticated")


async def test_every_backend_call_of_a_request_carries_its_callers_token(
    client, shared_world, token, fakes
) -> None:
    """The services verify the caller's token themselves: the gateway forwards it with each call it makes
    for the request, and no other request's."""
    mine, theirs = token(), token(subject=shared_world.subject)
    before = len(fakes.tokens.calls)
    response = await client.get(
        f"/v1/renders/{shared_world.render}/images/{shared_world.image}",
        headers={"Authorization": f"Bearer {mine}"},
    )
    assert response.status_code == 200, response.text
    response = await client.get(
        f"/v1/subjects/{shared_world.subject}", headers={"Authorization": f"Bearer {theirs}"}
    )
    assert response.status_code == 200, response.text
    calls = fakes.tokens.calls[before:]
    assert [method for method, _ in calls] == ["GetRender", "GetSubject", "FetchImage", "GetSubject"]
    assert [carried for _, carried in calls] == [mine, mine, mine, theirs]
    before = len(fakes.tokens.calls)
    await client.get("/readyz", headers={"Authorization": f"Bearer {mine}"})
    checks = [carried for method, carried in fakes.tokens.calls[before:] if method == "Check"]
    assert checks == [None] * 4, "health checks are no one's call"
