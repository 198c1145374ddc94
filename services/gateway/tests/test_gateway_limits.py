"""The edge's limits as pure logic: rate buckets per caller under a tenant total, who a caller is, slots of
long requests, the limits each route gets, and the contract documenting what the edge answers."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.caller import Caller, caller_of
from gateway.caller_slots import CallerSlots
from gateway.config import GatewaySettings
from gateway.edge_routes import RouteKind, RouteTable
from gateway.errors import ApiError
from gateway.ratelimit import Limits, Rate, RateLimiter
from gateway.uploads import FORM_OVERHEAD_BYTES
from likeness.user_tokens import Principal, principal_of

SUBJECT = "sub_01jbz3p5b7d9f1h3k5m7q9s1vw"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, caller: Rate, tenant: Rate, max_callers: int = 100) -> RateLimiter:
    return RateLimiter({"api": Limits(caller=caller, tenant=tenant)}, 10, max_callers, clock=clock)


def outcomes(limits: RateLimiter, caller: Caller, times: int) -> list[int]:
    answers = []
    for _ in range(times):
        try:
            limits.check(caller, "api")
            answers.append(200)
        except ApiError as refused:
            answers.append(refused.status)
    return answers


def test_a_caller_gets_its_burst_then_its_rate() -> None:
    clock = Clock()
    limits = limiter(clock, caller=Rate(2.0, 3), tenant=Rate(100.0, 100))
    anna = Caller("acme", "sub:a")
    assert outcomes(limits, anna, 4) == [200, 200, 200, 429]
    clock.now += 0.5  # one token back at 2/s
    assert outcomes(limits, anna, 2) == [200, 429]


def test_callers_of_a_tenant_share_its_total_and_a_refusal_spends_nothing() -> None:
    clock = Clock()
    # Callers' buckets barely refill; the tenant's refills one token a second.
    limits = limiter(clock, caller=Rate(0.001, 2), tenant=Rate(1.0, 3))
    anna, ben, other = Caller("acme", "sub:a"), Caller("acme", "sub:b"), Caller("globex", "sub:a")
    assert outcomes(limits, anna, 3) == [200, 200, 429]
    assert outcomes(limits, ben, 2) == [200, 429], "the tenant had one token left"
    assert outcomes(limits, other, 2) == [200, 200], "another tenant has its own total"
    clock.now += 1.0
    # Ben's refused request took nothing from his own bucket: its last token is still his.
    assert outcomes(limits, ben, 1) == [200]
    assert outcomes(limits, ben, 1) == [429]


def test_a_refusal_says_when_to_come_back() -> None:
    clock = Clock()
    limits = limiter(clock, caller=Rate(0.25, 1), tenant=Rate(100.0, 100))
    limits.check(Caller("acme", "tenant"), "api")
    with pytest.raises(ApiError) as refused:
        limits.check(Caller("acme", "tenant"), "api")
    assert refused.value.code == "rate_limited"
    assert refused.value.headers["Retry-After"] == "4"


def test_forgotten_callers_start_full_but_the_tenant_total_still_holds() -> None:
    clock = Clock()
    limits = limiter(clock, caller=Rate(0.001, 1), tenant=Rate(0.001, 5), max_callers=2)
    many = [Caller("acme", f"sub:{n}") for n in range(10)]
    assert [outcomes(limits, caller, 1)[0] for caller in many] == [200] * 5 + [429] * 5


def test_who_the_caller_is() -> None:
    scopes = frozenset({"subjects:read"})
    assert caller_of(Principal("acme", scopes, subject=SUBJECT, client="crm")) == Caller(
        "acme", f"sub:{SUBJECT}"
    )
    assert caller_of(Principal("acme", scopes, client="crm")) == Caller("acme", "client:crm")
    assert caller_of(Principal("acme", scopes)) == Caller("acme", "tenant")


@pytest.mark.parametrize(
    ("claims", "client"),
    [
        ({"client_id": "crm-backend"}, "crm-backend"),
        ({"azp": "mobile.app"}, "mobile.app"),
        ({"client_id": "crm", "azp": "other"}, "crm"),
        ({"client_id": "has space"}, None),
        ({"client_id": "x" * 129}, None),
        ({"client_id": 7}, None),
        ({}, None),
    ],
)
def test_the_client_is_read_from_the_token_when_harmless(claims: dict[str, Any], client: str | None) -> None:
    principal = principal_of({"tenant": "acme", "scope": "subjects:read", **claims})
    assert principal.client == client


def test_slots_are_capped_per_caller_and_forgotten_when_given_back() -> None:
    slots = CallerSlots(per_caller=2)
    anna, ben = Caller("acme", "sub:a"), Caller("acme", "sub:b")
    assert [slots.try_take(anna) for _ in range(3)] == [True, True, False]
    assert slots.try_take(ben)
    slots.give_back(anna)
    assert slots.try_take(anna)
    for _ in range(2):
        slots.give_back(anna)
    slots.give_back(ben)
    assert slots.held(anna) == slots.held(ben) == 0
    assert not slots._held, "nothing is remembered of callers that hold nothing"


@pytest.fixture(scope="module")
def table() -> RouteTable:
    settings = GatewaySettings(jwt_dev_secret="x" * 40, max_upload_bytes=1000, max_files_per_request=3)
    return RouteTable.of(create_app(settings), settings)


@pytest.mark.parametrize(
    ("method", "path", "kind", "needs_token"),
    [
        ("POST", "/v1/subjects", RouteKind.API, True),
        ("POST", f"/v1/subjects/{SUBJECT}/photos", RouteKind.UPLOAD, True),
        ("GET", f"/v1/subjects/{SUBJECT}/photos", RouteKind.API, True),
        ("GET", "/v1/trainings/trn_x/events", RouteKind.EVENTS, True),
        ("GET", "/v1/renders/ren_x/events", RouteKind.EVENTS, True),
        ("GET", f"/v1/subjects/{SUBJECT}/export", RouteKind.EXPORT, True),
        ("PUT", "/v1/team-looks/sales", RouteKind.API, True),
        ("GET", "/v1/receipt-keys", RouteKind.API, False),
        ("GET", "/healthz", RouteKind.PROBE, False),
        ("GET", "/readyz", RouteKind.PROBE, False),
        ("GET", "/openapi.json", RouteKind.API, False),
        ("GET", "/nowhere", RouteKind.API, False),
        ("DELETE", "/v1/styles", RouteKind.API, False),  # 405: no route of that method
    ],
)
def test_each_route_gets_its_kind_and_whether_it_needs_a_token(
    table: RouteTable, method: str, path: str, kind: RouteKind, needs_token: bool
) -> None:
    policy = table.match(method, path)
    assert (policy.kind, policy.needs_token) == (kind, needs_token)


def test_only_the_upload_takes_more_than_a_small_json_body(table: RouteTable) -> None:
    assert table.match("POST", f"/v1/subjects/{SUBJECT}/photos").body_limit == 3 * 1000 + FORM_OVERHEAD_BYTES
    for method, path in [("POST", "/v1/subjects"), ("GET", "/v1/styles"), ("PUT", "/v1/retention-policy")]:
        assert table.match(method, path).body_limit == 64 * 1024
    # A path that only looks like a route's (an extra segment) is no route.
    assert table.match("POST", f"/v1/subjects/{SUBJECT}/photos/more").name == ""


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    document: dict[str, Any] = create_app(GatewaySettings(jwt_dev_secret="x" * 40)).openapi()
    return document


def test_the_contract_documents_what_the_edge_answers(schema: dict[str, Any]) -> None:
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if path in ("/healthz", "/readyz"):
                assert "`overloaded`" not in responses.get("503", {}).get("description", ""), path
                continue
            assert "`overloaded`" in responses["503"]["description"], (method, path)
            if "requestBody" in operation:
                assert "`payload_too_large`" in responses["413"]["description"], (method, path)
    events = schema["paths"]["/v1/trainings/{training_id}/events"]["get"]["responses"]
    assert "`too_many_streams`" in events["429"]["description"]
    export = schema["paths"]["/v1/subjects/{subject_id}/export"]["get"]["responses"]
    assert "`too_many_exports`" in export["429"]["description"]
    upload = schema["paths"]["/v1/subjects/{subject_id}/photos"]["post"]["responses"]
    assert "`upload_timeout`" in upload["408"]["description"]
    assert "Idempotent-Replayed" not in upload["408"]["headers"], "a 408 is never stored"
