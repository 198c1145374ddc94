"""What the edge must know of each route before anything runs: its body limit, whether it needs a token,
and its kind (an upload, an event stream, an export, or any other API call).

Built once from the app's own routes (`RouteTable.of(app, settings)`), so a route added later gets the
right limits without being listed here: a route that depends on the bearer token needs one at the edge,
every body but the upload's is JSON and small. Matched by method and path template, as FastAPI routes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from gateway.config import GatewaySettings
from gateway.deps import UPLOAD_ROUTES, authenticate
from gateway.uploads import UploadLimits

#: Routes (by endpoint name) that stream Server-Sent Events, and the subject export.
EVENT_STREAM_ROUTES = frozenset({"training_events", "render_events"})
EXPORT_ROUTES = frozenset({"export_subject"})
#: Probes: never refused for load (a kubelet that reads 503 there would restart a busy pod).
PROBE_ROUTES = frozenset({"healthz", "readyz"})
_PARAMETER = re.compile(r"\{[^}/]+\}")


class RouteKind(StrEnum):
    API = "api"
    UPLOAD = "upload"
    EVENTS = "events"
    EXPORT = "export"
    PROBE = "probe"


@dataclass(frozen=True)
class RoutePolicy:
    #: The endpoint's name, and its path template (`/v1/subjects/{subject_id}`; "" for no route): what the
    #: access log and the metrics name a request refused before routing by.
    name: str
    path: str
    kind: RouteKind
    body_limit: int
    needs_token: bool


class RouteTable:
    def __init__(self, policies: list[tuple[str, str, RoutePolicy]], default: RoutePolicy) -> None:
        """`policies`: (method, path template, policy); `default`: for what matches no route (404, 405)."""
        self.default = default
        self._static: dict[tuple[str, str], RoutePolicy] = {}
        self._templated: dict[str, list[tuple[re.Pattern[str], RoutePolicy]]] = {}
        for method, path, policy in policies:
            if _PARAMETER.search(path) is None:
                self._static[(method, path)] = policy
            else:
                self._templated.setdefault(method, []).append((_pattern(path), policy))

    @classmethod
    def of(cls, app: FastAPI, settings: GatewaySettings) -> RouteTable:
        json_limit = settings.max_json_body_bytes
        upload_limit = UploadLimits(settings.max_upload_bytes, settings.max_files_per_request).max_body_bytes
        policies = []
        for name, path, method, dependant in _api_routes(app):
            kind = kind_of(name)
            policy = RoutePolicy(
                name=name,
                path=path,
                kind=kind,
                body_limit=upload_limit if kind is RouteKind.UPLOAD else json_limit,
                needs_token=depends_on(dependant, authenticate),
            )
            policies.append((method, path, policy))
        return cls(policies, RoutePolicy("", "", RouteKind.API, json_limit, needs_token=False))

    def match(self, method: str, path: str) -> RoutePolicy:
        found = self._static.get((method, path))
        if found is not None:
            return found
        for pattern, policy in self._templated.get(method, ()):
            if pattern.fullmatch(path):
                return policy
        return self.default


def _pattern(template: str) -> re.Pattern[str]:
    """`/v1/renders/{render_id}/events` -> a pattern of the paths it serves (one segment per parameter)."""
    return re.compile("[^/]+".join(re.escape(literal) for literal in _PARAMETER.split(template)))


def kind_of(name: str) -> RouteKind:
    """The kind of the route with this endpoint name."""
    if name in UPLOAD_ROUTES:
        return RouteKind.UPLOAD
    if name in EVENT_STREAM_ROUTES:
        return RouteKind.EVENTS
    if name in EXPORT_ROUTES:
        return RouteKind.EXPORT
    if name in PROBE_ROUTES:
        return RouteKind.PROBE
    return RouteKind.API


def _api_routes(app: FastAPI) -> Iterator[tuple[str, str, str, Dependant]]:
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute):
            for method in route.methods or ():
                yield str(route.name), str(route.path), method, route.dependant


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for child in dependant.dependencies:
        yield from _walk(child)


def depends_on(dependant: Dependant, call: object) -> bool:
    """Whether the route's dependencies (at any depth) include `call`."""
    return any(node.call is call for node in _walk(dependant))
