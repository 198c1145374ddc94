"""What the OpenAPI schema says each route can answer: written here, in one place, from what the route uses.

A route declares only the answers of its own logic (`responses=answers("not_found", "subject_erased")`).
`document_answers(app)` then adds what the shared machinery can answer on it, found from the route's
dependencies and parameters, so no route can forget one:

- the edge (`gateway.edge`), on every route but the probes: 503 `overloaded` (`Retry-After`); on a route
  that takes a body, 413 `payload_too_large`; on an event stream 429 `too_many_streams`, on the export
  429 `too_many_exports` (`Retry-After`);
- a bearer token: 401 `unauthenticated` (`WWW-Authenticate`), 403 `insufficient_scope`, 429 `rate_limited`
  (`Retry-After`), 503 `unavailable` (`Retry-After`: token keys or a backend unreachable);
- `Idempotency-Key`: 400 `invalid_idempotency_key`, 409 `idempotency_in_progress` (`Retry-After`), 422
  `idempotency_key_reused`, and `Idempotent-Replayed` on a replayed answer;
- a paged list (`cursor`): 400 `invalid_cursor`; what FastAPI validates (parameters, a body): 422
  `invalid_request`;
- every route: 500 `internal`; every request that is not streamed: 504 `timeout` (the request deadline);
- on every answer, `X-Request-Id` and `Cache-Control: no-store` (the request middleware sets them).

Each error response lists the machine codes it can carry, so a client knows what `error.code` to expect.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from gateway import links
from gateway.deps import authenticate, idempotency_claim
from gateway.edge_routes import RouteKind, kind_of
from gateway.middleware import is_streaming
from gateway.request_context import REQUEST_ID_HEADER
from gateway.schemas import ErrorResponse

#: Every machine code the gateway answers with: its HTTP status and when it is given.
ERRORS: dict[str, tuple[int, str]] = {
    # Shared machinery (added to routes by `document_answers`).
    "unauthenticated": (401, "no bearer token, or one that is invalid, expired or not for this API"),
    "insufficient_scope": (403, "the token lacks the route's scope, or is an end user's on a tenant route"),
    "rate_limited": (
        429,
        "the caller's or its tenant's request rate is exceeded; retry after `Retry-After` seconds",
    ),
    "overloaded": (503, "the gateway has as many requests in flight as it takes; retry after `Retry-After`"),
    "too_many_streams": (
        429,
        "the caller has as many event streams open as it may; retry after `Retry-After`",
    ),
    "too_many_exports": (429, "the caller has as many exports running as it may; retry after `Retry-After`"),
    "unavailable": (503, "a backend (or NATS, or the token keys) is unreachable; retry after `Retry-After`"),
    "storage_full": (
        503,
        "a stream or bucket the write needs is at its bound and refused it; the operator is alerted; retry "
        "after `Retry-After`",
    ),
    "audit_trail_full": (503, "the audit trail is at its bound and refused the access's record; retry later"),
    "internal": (500, "an unexpected failure on our side; the message says nothing about it"),
    "timeout": (504, "the request took longer than the gateway's deadline"),
    "invalid_request": (422, "a parameter or the body does not validate; the message says which"),
    "invalid_idempotency_key": (
        400,
        "`Idempotency-Key` is not 1..255 printable ASCII characters (with no space at either end)",
    ),
    "idempotency_in_progress": (
        409,
        "a request with this `Idempotency-Key` is still being answered; retry after `Retry-After`",
    ),
    "idempotency_key_reused": (422, "this `Idempotency-Key` was used before with another request"),
    "invalid_cursor": (400, "`cursor` is not the `next_cursor` of a page of this list"),
    # Route logic (declared by each route with `answers`).
    "not_found": (404, "no such resource, or not one this token may see"),
    "subject_erased": (410, "the subject is being or has been erased"),
    "own_token_required": (
        403,
        "the processing log is served only to the person's own token (one whose `sub` is the subject)",
    ),
    "invalid_consent": (400, "the consent's purpose and policy version are required"),
    "invalid_purpose": (400, "a consent purpose that is not `headshots`, `team_look` or `instant`"),
    "invalid_policy_version": (400, "the policy version is blank or longer than 64 characters"),
    "invalid_expiry": (400, "a grant's expiry that is not in the future"),
    "too_many_grants": (400, "the subject's consent history is at its bound"),
    "consent_required": (
        403,
        "the subject has no live consent grant for this job's purpose (`POST /v1/subjects/{id}/consents`)",
    ),
    "grant_needs_subject_token": (
        403,
        "the tenant's consent policy takes grants only from the person's own token",
    ),
    "invalid_multipart": (400, "the multipart/form-data body is malformed or has no boundary"),
    "no_files": (400, "the body has no `file` part"),
    "too_many_photos": (409, "the subject already has the most accepted photos kept"),
    "payload_too_large": (
        413,
        "the body is larger than the route accepts (`LIKENESS_MAX_JSON_BODY_BYTES`; an upload: the files "
        "allowed together), refused before it is read",
    ),
    "upload_timeout": (408, "the upload's body did not arrive within its deadline; the connection is closed"),
    "file_too_large": (413, "a file is larger than `LIKENESS_MAX_UPLOAD_BYTES`"),
    "too_many_files": (413, "more files than `LIKENESS_MAX_FILES_PER_REQUEST`"),
    "unsupported_media_type": (415, "the body is not multipart/form-data"),
    "unsupported_format": (415, "every photo was rejected, the first as not a JPEG, PNG, WebP or HEIC photo"),
    "no_accepted_photos": (
        409,
        "the subject has no accepted photos to train on (or, instant, to render from)",
    ),
    "instant_unavailable": (409, "this deployment has no identity adapter configured (instant mode is off)"),
    "not_enough_photos": (409, "fewer accepted photos than a training needs"),
    "invalid_steps": (400, "more steps than the trainer allows"),
    "quota_exceeded": (
        429,
        "a quota of the tenant is reached; `error.quota` names it (`concurrent_trainings`, "
        "`concurrent_renders`, `gpu_seconds_per_day`: until UTC midnight, `training_steps`, "
        "`active_training_per_subject`); retry after `Retry-After`",
    ),
    "training_not_found": (404, "`training_id` names no training of this subject"),
    "training_not_ready": (409, "the training has not succeeded (yet)"),
    "training_running": (409, "the training is still queued or running: cancel it, then delete it"),
    "render_running": (409, "the render is still queued or running: cancel it, then delete it"),
    "unknown_style": (400, "a style that is not in the catalog (`GET /v1/styles`)"),
    "unknown_background": (400, "a background that is not in the catalog (`GET /v1/styles`)"),
    "unknown_catalog_id": (
        422,
        "a `background`, `outfit` or `lighting` id that is not in the catalog (`GET /v1/styles`); the "
        "message names it",
    ),
    "invalid_images_per_style": (400, "more images per style than the renderer allows"),
    "team_look_not_found": (404, "`team_look_id` names no team look of the tenant"),
    "team_look_conflict": (409, "styles or a seed that contradict the team look as it is now (it pins them)"),
    "team_looks_unavailable": (409, "this deployment keeps no team looks"),
    "invalid_team_look_id": (400, "the look id is not 1-40 lower-case letters, digits and inner dashes"),
    "invalid_team_look": (400, "the look cannot be built (e.g. its name, once trimmed, is empty)"),
    "invalid_schedule": (400, "a period beyond what retention allows"),
    "not_ready": (503, "a backend is not serving, or NATS is not connected; retry after `Retry-After`"),
}

#: The headers the API answers with, as OpenAPI header components (`#/components/headers/<key>`):
#: key -> (header name, header object).
HEADERS: dict[str, tuple[str, dict[str, Any]]] = {
    "RequestId": (
        REQUEST_ID_HEADER,
        {
            "description": "The request's id: yours if you sent a valid one, else a new one (quote it to "
            "support)",
            "required": True,
            "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{8,64}$"},
        },
    ),
    "NoStore": (
        "Cache-Control",
        {
            "description": "Nothing the API answers may be cached",
            "required": True,
            "schema": {"type": "string", "enum": ["no-store"]},
        },
    ),
    "RetryAfter": (
        "Retry-After",
        {
            "description": "Seconds to wait before retrying",
            "required": True,
            "schema": {"type": "integer", "minimum": 1},
        },
    ),
    "RetryAfterIfInProgress": (
        "Retry-After",
        {
            "description": "With `idempotency_in_progress`: seconds to wait before retrying",
            "required": False,
            "schema": {"type": "integer", "minimum": 1},
        },
    ),
    "Challenge": (
        "WWW-Authenticate",
        {
            "description": "The bearer challenge (RFC 6750), with the error",
            "required": True,
            "schema": {"type": "string", "pattern": "^Bearer "},
        },
    ),
    "ScopeChallenge": (
        "WWW-Authenticate",
        {
            "description": "With `insufficient_scope`: the bearer challenge naming the scope needed",
            "required": False,
            "schema": {"type": "string", "pattern": "^Bearer "},
        },
    ),
    "Location": (
        "Location",
        {
            "description": "Where the created (or started) resource is read",
            "required": True,
            "schema": {"type": "string", "pattern": "^/v1/"},
        },
    ),
    "Attachment": (
        "Content-Disposition",
        {
            "description": 'A download, with its file name: `attachment; filename="..."`',
            "required": True,
            "schema": {"type": "string", "pattern": "^attachment; filename="},
        },
    ),
    "IdempotentReplayed": (
        "Idempotent-Replayed",
        {
            "description": "`true` when this is the stored answer to an earlier request with the same "
            "`Idempotency-Key`",
            "required": False,
            "schema": {"type": "string", "enum": ["true"]},
        },
    ),
}
_ALWAYS_HEADERS = ("RequestId", "NoStore")
#: Statuses whose every answer carries `Retry-After`.
_RETRY_AFTER_STATUSES = frozenset({429, 503})
#: Answers of an idempotent route that are stored, so a retry may get them again with `Idempotent-Replayed`.
_NOT_REPLAYED = frozenset({401, 403, 408, 429})


def header(key: str) -> dict[str, dict[str, Any]]:
    """`{name: reference}` for a route's `responses[...]["headers"]`, e.g. `header("Location")`."""
    name, _ = HEADERS[key]
    return {name: {"$ref": f"#/components/headers/{key}"}}


def answers(*codes: str, model: Any = ErrorResponse, note: str = "") -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these machine codes, one response per status listing its codes.

    `model` is the body of those statuses (the error envelope unless given); `note` is added to each.
    """
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(ERRORS[code][0], []).append(code)
    return {
        status: {"model": model, "description": _describe(listed) + (f"\n\n{note}" if note else "")}
        for status, listed in sorted(by_status.items())
    }


def _describe(codes: list[str]) -> str:
    return "\n".join(f"- `{code}`: {ERRORS[code][1]}" for code in codes)


def document_answers(app: FastAPI) -> None:
    """Makes the app's OpenAPI schema carry every route's shared answers and headers, and its links."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()  # FastAPI's own, cached on the app: completed here once
            complete(schema, list(_api_routes(app)))
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customize it


@dataclass(frozen=True)
class _Operation:
    """What `complete` needs of a route (FastAPI's route context, with the router's prefix applied)."""

    name: str
    path: str
    method: str
    operation_id: str
    dependant: Dependant


def _api_routes(app: FastAPI) -> Iterator[_Operation]:
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and route.include_in_schema:
            # FastAPI makes one route per method (a route's decorator names one).
            method = next(iter(route.methods or {"GET"}))
            yield _Operation(str(route.name), str(route.path), method, str(route.unique_id), route.dependant)


def complete(schema: dict[str, Any], routes: list[_Operation]) -> None:
    """Adds to each operation of `schema` the answers, headers and links its route's machinery gives."""
    operation_ids = {route.name: route.operation_id for route in routes}
    components = schema.setdefault("components", {})
    components["headers"] = {key: value for key, (_, value) in HEADERS.items()}
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body, never sent
        components.get("schemas", {}).pop(unused, None)
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for route in routes:
        operation = schema["paths"][route.path][route.method.lower()]
        for parameter in operation.get("parameters", ()):
            _not_nullable(parameter["schema"])
        responses: dict[str, Any] = operation["responses"]
        # FastAPI documents its own validation error body; the gateway answers those with the envelope.
        if responses.get("422", {}).get("description") == "Validation Error":
            del responses["422"]
        for status, entry in answers(*_shared_codes(route)).items():
            shared = {"description": entry["description"], "content": error_content}
            responses[str(status)] = _merged(responses.get(str(status)), shared)
        idempotent = _depends_on(route.dependant, idempotency_claim)
        authenticated = _depends_on(route.dependant, authenticate)
        for status, entry in responses.items():
            headers = entry.setdefault("headers", {})
            for key in _header_keys(int(status), idempotent=idempotent, authenticated=authenticated):
                for name, reference in header(key).items():
                    headers.setdefault(name, reference)
        for status, found in links.links_of(route.name, operation_ids).items():
            responses.setdefault(str(status), {}).setdefault("links", {}).update(found)
        # Ascending, as a reader expects (FastAPI lists the route's own answers first).
        ordered = dict(sorted(responses.items()))
        responses.clear()
        responses.update(ordered)


def _header_keys(status: int, *, idempotent: bool, authenticated: bool) -> list[str]:
    """The shared headers (`HEADERS` keys) an answer with this status carries on such a route."""
    keys = [*_ALWAYS_HEADERS]
    if status in _RETRY_AFTER_STATUSES:
        keys.append("RetryAfter")
    if status == 409 and idempotent:
        keys.append("RetryAfterIfInProgress")
    if status == 401:
        keys.append("Challenge")
    if status == 403 and authenticated:
        keys.append("ScopeChallenge")
    if idempotent and status not in _NOT_REPLAYED and status < 500:
        keys.append("IdempotentReplayed")
    return keys


def _not_nullable(schema: dict[str, Any]) -> None:
    """An optional parameter is absent or a value: FastAPI's `anyOf [T, null]` for `T | None` says it could
    be null, which a query string or a header cannot carry. Keeps T, with the keywords beside `anyOf`."""
    options = schema.get("anyOf")
    if not isinstance(options, list) or {"type": "null"} not in options or len(options) != 2:
        return
    [kept] = [option for option in options if option != {"type": "null"}]
    del schema["anyOf"]
    schema.update(kept)


def _shared_codes(route: _Operation) -> Iterator[str]:
    kind = kind_of(route.name)
    if kind is not RouteKind.PROBE:
        yield "overloaded"
    if kind is RouteKind.UPLOAD or _takes_body(route.dependant):
        yield "payload_too_large"
    if kind is RouteKind.EVENTS:
        yield "too_many_streams"
    if kind is RouteKind.EXPORT:
        yield "too_many_exports"
    if _depends_on(route.dependant, authenticate):
        yield from ("unauthenticated", "insufficient_scope", "rate_limited", "unavailable")
    if _depends_on(route.dependant, idempotency_claim):
        yield from ("invalid_idempotency_key", "idempotency_in_progress", "idempotency_key_reused")
        yield "unavailable"  # the idempotency records live in NATS
        # A write fails closed when a stream or bucket it needs is full (DiscardNew), and so does an
        # access whose audit record the full trail refuses.
        yield from ("storage_full", "audit_trail_full")
    if any(param.name == "cursor" for param in _all_query_params(route.dependant)):
        yield "invalid_cursor"
    if _validates(route.dependant):
        yield "invalid_request"
    yield "internal"
    if not is_streaming(route.method, route.path):
        yield "timeout"


def _merged(declared: dict[str, Any] | None, shared: dict[str, Any]) -> dict[str, Any]:
    """A route's own answer for a status with the shared codes of that status added to its list."""
    if declared is None:
        return shared
    lines = declared.get("description", "").split("\n")
    extra = [line for line in shared["description"].split("\n") if line not in lines]
    merged = dict(declared)
    # The codes stay one list, ahead of any note the route added after its own codes.
    codes = [line for line in lines if line.startswith("- `")]
    rest = [line for line in lines if not line.startswith("- `")]
    merged["description"] = "\n".join(codes + extra + rest).strip()
    merged.setdefault("content", shared["content"])
    return merged


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for child in dependant.dependencies:
        yield from _walk(child)


def _depends_on(dependant: Dependant, call: Any) -> bool:
    return any(node.call is call for node in _walk(dependant))


def _all_query_params(dependant: Dependant) -> Iterator[Any]:
    for node in _walk(dependant):
        yield from node.query_params


def _takes_body(dependant: Dependant) -> bool:
    return any(node.body_params for node in _walk(dependant))


def _validates(dependant: Dependant) -> bool:
    """Whether FastAPI can refuse the request's parameters or body (422 `invalid_request`)."""
    for node in _walk(dependant):
        if node.body_params:
            return True
        for param in (*node.path_params, *node.query_params, *node.header_params, *node.cookie_params):
            if param.field_info.metadata or param.field_info.annotation not in (str, str | None):
                return True
    return False
