"""Development JWTs for the gateway: HS256, signed with the per-stack `LIKENESS_JWT_DEV_SECRET`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import jwt

DEV_ISSUER = "likeness-dev"
DEV_AUDIENCE = "likeness"
DEV_ALGORITHM = "HS256"
DEV_TENANT = "dev"

ALL_SCOPES: tuple[str, ...] = (
    "subjects:read",
    "subjects:write",
    "subjects:erase",
    "photos:read",
    "photos:write",
    "trainings:read",
    "trainings:write",
    "renders:read",
    "renders:write",
    "subjects:export",
    "retention:read",
    "retention:write",
    "looks:read",
    "looks:write",
)


def mint_dev_token(
    secret: str,
    tenant: str,
    scopes: Sequence[str],
    subject: str | None = None,
    ttl_seconds: int = 3600,
) -> str:
    """A signed dev token for `tenant` with `scopes` (space-separated in the `scope` claim).

    Scopes are not checked against ALL_SCOPES, and a negative `ttl_seconds` gives an already expired
    token, so tests can mint the tokens the gateway must refuse.
    """
    if not secret:
        raise ValueError("the signing secret is empty")
    if not tenant:
        raise ValueError("the tenant is empty")
    if isinstance(scopes, str):
        raise TypeError("scopes must be a sequence of scope names, not one string")
    for scope in scopes:
        if not scope or any(char.isspace() for char in scope):
            raise ValueError(f"invalid scope {scope!r}: scopes are non-empty and contain no whitespace")
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "tenant": tenant,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    if subject is not None:
        claims["sub"] = subject
    return jwt.encode(claims, secret, algorithm=DEV_ALGORITHM)


def parse_scopes(text: str) -> tuple[str, ...]:
    """Scopes as typed on the command line: separated by spaces and/or commas."""
    return tuple(part for part in text.replace(",", " ").split() if part)
