"""A malformed id in a path gets the route's 404, never a 500, on every route that takes an id, and is
refused before any backend call or idempotency record (issue 15).

The routes come from the gateway's own app (`app.routes`): a new route with an id is walked without anyone
adding it here. Each id parameter in turn gets a malformed value (a trailing newline above all: an id
pattern ending in `$` accepts it, and NATS then refuses it as a subject token, a 500), the others a
well-formed one, and the request goes to the real gateway of the dev stack with a token holding every scope.
The backends' call counters (`likeness_grpc_server_handled_total`) and the idempotency bucket must not
move, and the gateway's own request counter must show each answer under the route's template (so the 404
is the route's, not the router's "no such path").
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import nats
import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.config import GatewaySettings
from gateway.path_ids import ID_KINDS, KNOWN_PARAMETERS, LOOK_ID_PARAMETER
from likeness.bus import kv_keys
from likeness.ids import new_id
from likeness_dev.stack import DevStack

#: Malformed variants of a well-formed id, each of which a `$`-anchored or `.match` check lets through in
#: part: the trailing newline (what the issue found), CRLF, spaces, upper case, another kind's prefix.
MALFORMED: dict[str, Callable[[str], str]] = {
    "trailing newline": lambda good: good + "\n",
    "trailing CRLF": lambda good: good + "\r\n",
    "leading space": lambda good: " " + good,
    "upper case": lambda good: good.upper(),
    "another kind": lambda good: "job_" + good.partition("_")[2] if "_" in good else good + "_",
}
GATEWAY_BACKENDS = ("retention", "ingest", "trainer", "renderer")
IDEMPOTENCY_BUCKET = "gateway_idempotency"
_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True)
class Call:
    method: str
    template: str
    path: str
    variant: str
    parameter: str

    @property
    def expected(self) -> tuple[int, str]:
        if self.parameter == LOOK_ID_PARAMETER and self.method == "PUT":
            return 400, "invalid_team_look_id"  # PUT creates the look: a malformed name is refused
        return 404, "not_found"


def _routes_with_ids() -> list[tuple[str, str, list[str]]]:
    """(method, path template, id parameters) of every route of the gateway app that takes an id."""
    app = create_app(GatewaySettings(env="development", jwt_dev_secret="walk-the-routes-" + "x" * 24))
    found = []
    for route in iter_route_contexts(app.routes):  # app.routes, included routers unfolded
        if not isinstance(route.original_route, APIRoute) or route.path is None:
            continue
        parameters = _PARAMETER.findall(route.path)
        for method in sorted(route.methods or ()) if parameters else ():
            found.append((method, route.path, parameters))
    return found


ROUTES = _routes_with_ids()


def _well_formed(parameter: str) -> str:
    return "sales-emea" if parameter == LOOK_ID_PARAMETER else new_id(ID_KINDS[parameter])


def _calls() -> list[Call]:
    calls = []
    for method, template, parameters in ROUTES:
        for malformed in parameters:
            for variant, spoil in MALFORMED.items():
                values = {name: _well_formed(name) for name in parameters}
                values[malformed] = spoil(values[malformed])
                path = template
                for name, value in values.items():
                    path = path.replace("{" + name + "}", quote(value, safe=""))
                calls.append(Call(method, template, path, variant, malformed))
    return calls


def test_every_path_parameter_of_the_api_has_an_id_rule() -> None:
    """A route with a parameter `gateway.path_ids` does not know would answer 500: caught here first."""
    assert ROUTES, "the app has routes with ids"
    parameters = {name for _, _, names in ROUTES for name in names}
    assert parameters <= KNOWN_PARAMETERS, parameters - KNOWN_PARAMETERS
    assert set(ID_KINDS) <= parameters, "every id kind the gateway checks is in some path"


def _backend_calls(stack: DevStack) -> int:
    total = 0.0
    for name in GATEWAY_BACKENDS:
        text = httpx.get(f"{stack.services[name].metrics_url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            if family.name == "likeness_grpc_server_handled":
                total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return int(total)


def _gateway_answers(stack: DevStack) -> Counter[tuple[str, str, str]]:
    """(method, route template, status) -> requests, from the gateway's own counter."""
    text = httpx.get(f"{stack.services['gateway'].metrics_url}/metrics", timeout=10).text
    counts: Counter[tuple[str, str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name == "likeness_gateway_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    key = (sample.labels["method"], sample.labels["route"], sample.labels["status"])
                    counts[key] = int(sample.value)
    return counts


async def _idempotency_keys(stack: DevStack) -> set[str]:
    # Listed from the stream's state, not nats-py's `keys()`: its replay can end early under load and
    # report fewer keys (even none), which reads here as records vanishing (see `kv_keys`).
    connection = await nats.connect(stack.infra.endpoints.nats_url)
    try:
        bucket = await connection.jetstream().key_value(IDEMPOTENCY_BUCKET)
        return set(await kv_keys(bucket, ""))
    finally:
        await connection.close()


def _body(call: Call) -> dict[str, Any]:
    """A valid request body for the route: without the id check the request would go on to a backend."""
    if call.method == "PUT":  # a team look
        return {"json": {"name": "Sales", "style": "corporate", "background": "light_gray"}}
    if call.method != "POST":
        return {}
    if call.template.endswith("/photos"):
        return {"files": [("file", ("face.jpg", b"\xff\xd8\xff\xe0 not really a photo", "image/jpeg"))]}
    if call.template.endswith("/renders"):
        return {"json": {"training_id": new_id("trn"), "styles": ["corporate"], "images_per_style": 1}}
    return {"json": {}}


def _send(client: httpx.Client, call: Call) -> httpx.Response:
    headers = {"Idempotency-Key": uuid.uuid4().hex} if call.method in ("POST", "DELETE") else {}
    return client.request(call.method, call.path, headers=headers, **_body(call))


def test_a_malformed_id_is_not_found_on_every_route_before_any_backend_call(stack: DevStack) -> None:
    calls = _calls()
    assert any(call.variant == "trailing newline" and "%0A" in call.path for call in calls)
    backend_calls_before = _backend_calls(stack)
    answers_before = _gateway_answers(stack)
    records_before = asyncio.run(_idempotency_keys(stack))
    wrong = []
    # One tenant per route: the walk sends more requests than one caller's rate bucket holds, and a 429
    # would hide the answer this test is about (the edge weighs the rate before the route sees the id).
    tenants = {
        template: f"ids-{number}" for number, template in enumerate(sorted({c.template for c in calls}))
    }
    clients = {
        template: httpx.Client(
            base_url=stack.gateway_url,
            headers={"Authorization": f"Bearer {stack.mint_token(tenant)}"},
            timeout=30,
        )
        for template, tenant in tenants.items()
    }
    try:
        for call in calls:
            response = _send(clients[call.template], call)
            code = response.json().get("error", {}).get("code") if response.content else None
            if (response.status_code, code) != call.expected:
                wrong.append(
                    f"{call.method} {call.path!r} ({call.variant} {call.parameter}): "
                    f"{response.status_code} {response.text[:200]}"
                )
    finally:
        for client in clients.values():
            client.close()
    assert wrong == [], "\n".join(wrong)
    assert _backend_calls(stack) == backend_calls_before, "a malformed id reached a backend service"
    assert asyncio.run(_idempotency_keys(stack)) == records_before, "a malformed id claimed a record"
    walked = {call.template for call in calls}
    answers = Counter(
        {key: n for key, n in (_gateway_answers(stack) - answers_before).items() if key[1] in walked}
    )
    expected = Counter((c.method, c.template, str(c.expected[0])) for c in calls)
    assert answers == expected, "every answer came from the route itself (its template in the metrics)"


@pytest.mark.parametrize("variant", ["trailing newline", "upper case"])
def test_a_malformed_cursor_is_refused_as_a_cursor(stack: DevStack, variant: str) -> None:
    """Query ids (cursors) are checked whole too: 400 `invalid_cursor`, never a 500 from the backend."""
    cursor = MALFORMED[variant](new_id("sub"))
    with httpx.Client(
        base_url=stack.gateway_url, headers={"Authorization": f"Bearer {stack.mint_token()}"}, timeout=30
    ) as client:
        response = client.get("/v1/subjects", params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_cursor"
