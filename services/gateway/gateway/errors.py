"""One error shape for every failure: `{"error": {"code": "<machine_code>", "message": "<for humans>"}}`.

gRPC failures of the backends map to HTTP statuses here; the service's own machine code (trailing
metadata `likeness-error-code`) is passed on when it sent one. Server-side failures say nothing about
their cause to the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from gateway.request_context import current_request_id
from likeness.quota_policy import QUOTA_EXCEEDED, QUOTA_METADATA_KEY, RETRY_AFTER_METADATA_KEY
from likeness.rpc_errors import error_code, error_detail, status_lost_to_a_late_write

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        details: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        #: Fields beside `code` and `message` in the error body (a refused quota's name).
        self.details = details or {}


def not_found() -> ApiError:
    """The one answer for anything the caller may not see, so existence cannot be probed."""
    return ApiError(404, "not_found", "No such resource.")


def subject_erased() -> ApiError:
    return ApiError(410, "subject_erased", "This subject has been erased.")


#: Seconds a client should wait before retrying a request refused with 503 (a backend briefly down).
RETRY_AFTER_UNAVAILABLE = 2
#: Backend codes for a write refused because a stream or bucket is at its bound (`likeness.storage_full`,
#: `likeness.audit.AuditTrailFull`): kept as they are, since an operator must act, not just wait.
FULL_STORAGE_CODES = frozenset({"storage_full", "audit_trail_full"})
#: Seconds before retrying such a write: an operator raises the bound, which takes minutes.
RETRY_AFTER_STORAGE_FULL = 60


def unavailable(message: str = "A backend service is unavailable; try again shortly.") -> ApiError:
    return ApiError(503, "unavailable", message, headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)})


def envelope(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    details: dict[str, str] | None = None,
) -> JSONResponse:
    """The error response; it names the request id, so a caller can quote it to support."""
    error = {"code": code, "message": message, "request_id": current_request_id(), **(details or {})}
    body = {"error": error}
    return JSONResponse(body, status_code=status, headers=headers)


#: gRPC status -> (HTTP status, default machine code).
_GRPC_TO_HTTP: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.NOT_FOUND: (404, "not_found"),
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_argument"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "failed_precondition"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "already_exists"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_denied"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "resource_exhausted"),
    grpc.StatusCode.UNAVAILABLE: (503, "unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (503, "unavailable"),
}


#: Machine codes whose HTTP status is not their gRPC status's: a team look's style or seed that a render
#: request contradicts is a conflict with the look's current state (a PUT may change it), not a malformed
#: request; an unknown catalog id is the same 422 the gateway answers when it finds it first.
_CODE_STATUS = {"team_look_conflict": 409, "subject_erased": 410, "unknown_catalog_id": 422}


def from_grpc(exc: grpc.aio.AioRpcError) -> ApiError:
    if status_lost_to_a_late_write(exc):
        # The backend ended an upload while a chunk was on its way, and grpc.aio lost its answer: the
        # request did not go through as a whole, and a retry (same Idempotency-Key) gets the real answer.
        log.warning("backend answer lost to a late write")
        return unavailable("The upload was interrupted by the backend; retry it.")
    mapped = _GRPC_TO_HTTP.get(exc.code())
    if mapped is None:
        log.error("backend call failed", extra={"grpc_status": exc.code().name})
        return ApiError(500, "internal", "Something went wrong on our side.")
    status, default_code = mapped
    if status == 503 and error_code(exc) in FULL_STORAGE_CODES:
        # Not a backend that is down: a bound was reached and the write refused (issue 18). Say which.
        log.error("backend storage full", extra={"code": error_code(exc)})
        return ApiError(
            503,
            str(error_code(exc)),
            "Storage for this request is full; the operator has been alerted. Retry later.",
            headers={"Retry-After": str(RETRY_AFTER_STORAGE_FULL)},
        )
    if status == 503:
        log.warning("backend unavailable", extra={"grpc_status": exc.code().name})
        return unavailable()
    if error_code(exc) == QUOTA_EXCEEDED:
        return quota_exceeded(exc)
    code = error_code(exc) or default_code
    return ApiError(_CODE_STATUS.get(code, status), code, exc.details() or default_code.replace("_", " "))


def quota_exceeded(exc: grpc.aio.AioRpcError) -> ApiError:
    """429 `quota_exceeded` naming the tenant's quota (`likeness.quotas`), with the backend's retry hint."""
    quota = error_detail(exc, QUOTA_METADATA_KEY)
    retry_after = error_detail(exc, RETRY_AFTER_METADATA_KEY) or ""
    headers = {"Retry-After": retry_after if retry_after.isdigit() else str(RETRY_AFTER_UNAVAILABLE)}
    return ApiError(
        429,
        QUOTA_EXCEEDED,
        exc.details() or "A quota of the tenant is reached.",
        headers=headers,
        details={"quota": quota} if quota else None,
    )


#: FastAPI's detail for a body it could not decode at all.
_UNPARSEABLE_BODY = "There was an error parsing the body"
_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts)


async def _on_api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return envelope(exc.status, exc.code, exc.message, exc.headers, exc.details)


async def _on_grpc_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, grpc.aio.AioRpcError)
    return await _on_api_error(request, from_grpc(exc))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSEABLE_BODY:
        # FastAPI's answer to a JSON body that is not UTF-8 (a JSON syntax error is already a validation
        # error): the same 422 `invalid_request` every route documents for a body that does not validate.
        return envelope(422, "invalid_request", "Invalid request: the body is not JSON (UTF-8).")
    code = _HTTP_CODES.get(exc.status_code, "internal" if exc.status_code >= 500 else "bad_request")
    message = "No such resource." if exc.status_code == 404 else str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names the methods of the first route that matched the path only; FastAPI makes one
        # route per method, so the path's other methods would be missing from `Allow`.
        allowed = allowed_methods(request.app.router.routes, request.scope)
        headers["Allow"] = ", ".join(allowed)
        message = f"{request.method} is not allowed here; use {' or '.join(allowed)}."
    return envelope(exc.status_code, code, message, headers)


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route serves at the request's path (whatever the request's own method)."""
    methods: set[str] = set()
    for route in iter_route_contexts(routes):
        match, _ = route.matches(scope)
        if match is not Match.NONE and route.methods:
            methods.update(route.methods)
    return sorted(methods)


#: Set on the request's state when its answer must not be kept for Idempotency-Key retries.
DO_NOT_STORE_KEY = "likeness_do_not_store"


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # The route never ran: a corrected retry with the same Idempotency-Key must run, not replay this.
    request.scope.setdefault("state", {})[DO_NOT_STORE_KEY] = True
    return envelope(422, "invalid_request", _validation_message(exc))


def install_error_handlers(app: FastAPI) -> None:
    """Unexpected exceptions are answered by the request middleware (it owns the response headers)."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(grpc.aio.AioRpcError, _on_grpc_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
