"""Errors: every failure the gateway answers is an `ApiError` carrying its machine code, message, HTTP
status and request id (quote it when asking for help); a subclass per status lets callers catch what
they can act on (`NotFound`, `Gone`, `RateLimited`...)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from likeness_client.models import Photo

REQUEST_ID_HEADER = "X-Request-Id"


class LikenessError(Exception):
    """Anything this client raises."""


class TransportError(LikenessError):
    """The gateway could not be reached (after the retries the policy allows)."""


class StreamError(LikenessError):
    """A progress stream ended too often before its terminal event."""


class ApiError(LikenessError):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(
            f"{message} ({code}, HTTP {status}" + (f", request {request_id})" if request_id else ")")
        )
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        #: Seconds the gateway asked to wait before retrying (429, 503), if it said.
        self.retry_after = retry_after


class BadRequest(ApiError):
    """400 or 422: the request itself is wrong; retrying it unchanged will not help."""


class Unauthenticated(ApiError):
    """401: no token, or an invalid or expired one."""


class Forbidden(ApiError):
    """403: the token lacks the scope this call needs."""


class NotFound(ApiError):
    """404: no such resource, or one this token may not see (the gateway does not say which)."""


class Conflict(ApiError):
    """409: the resource is not in a state that allows this (e.g. `training_not_ready`)."""


class Gone(ApiError):
    """410: the subject is being or has been erased."""


class PayloadTooLarge(ApiError):
    """413: a file or the request is too large."""


class UnsupportedMediaType(ApiError):
    """415: the body or a file is of a type the gateway does not take."""


class RateLimited(ApiError):
    """429: too many requests; `retry_after` says when to come back."""


class ServerError(ApiError):
    """5xx: the gateway's or a backend's fault."""


class Unavailable(ServerError):
    """503: a backend is unavailable; retrying later usually works."""


class UploadRejected(ApiError):
    """Every photo of an upload was rejected; `photos` holds each one's verdict and reasons."""

    def __init__(self, *args: Any, photos: list[Photo], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.photos = photos


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: BadRequest,
    429: RateLimited,
    503: Unavailable,
}


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(response: httpx.Response, body: bytes | None = None) -> ApiError:
    """The `ApiError` for a failed response (its body must have been read, or be given)."""
    status = response.status_code
    code, message = f"http_{status}", response.reason_phrase or "Request failed"
    payload: Any = None
    try:
        payload = json.loads(body if body is not None else response.content)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        code = str(payload["error"].get("code") or code)
        message = str(payload["error"].get("message") or message)
    args: dict[str, Any] = {
        "status": status,
        "code": code,
        "message": message,
        "request_id": response.headers.get(REQUEST_ID_HEADER),
        "retry_after": parse_retry_after(response.headers.get("Retry-After")),
    }
    if isinstance(payload, dict) and isinstance(payload.get("photos"), list):
        return UploadRejected(**args, photos=[Photo.model_validate(p) for p in payload["photos"]])
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(**args)


#: Statuses of the codes a progress stream's `error` event can carry (the stream itself answered 200).
_STATUS_OF_CODE = {
    "unauthenticated": 401,
    "insufficient_scope": 403,
    "not_found": 404,
    "subject_erased": 410,
}


def error_from_event(data: str) -> ApiError:
    """The `ApiError` an `error` event of a progress stream carries (`{"error": {"code", "message"}}`)."""
    try:
        payload = json.loads(data)
    except ValueError:
        payload = None
    body = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(body, dict):
        return ServerError(500, "stream_error", "The progress stream reported an error it did not describe.")
    code = str(body.get("code") or "stream_error")
    status = _STATUS_OF_CODE.get(code, 500)
    cls = _BY_STATUS.get(status) or ServerError
    request_id = body.get("request_id")
    return cls(
        status, code, str(body.get("message") or code), request_id=str(request_id) if request_id else None
    )
