"""Development JWTs for the gateway (and the services, which verify them again): HS256, signed with the
per-stack `jwt_dev_secret`.

The dev token carries every scope a route asks for plus `tenant:all`, the grant a token without `sub` needs
to touch the tenant's subjects (`likeness.user_tokens`): without it, such a token may only open subjects
and manage the tenant's policies and looks.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import jwt

from likeness.config import DEV_JWT_AUDIENCE, DEV_JWT_ISSUER
from likeness.grpc_user_tokens import token_interceptors
from likeness.user_tokens import TENANT_WIDE_SCOPE

# The settings' development defaults, which production refuses: a dev token is never accepted there.
DEV_ISSUER = DEV_JWT_ISSUER
DEV_AUDIENCE = DEV_JWT_AUDIENCE
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
    "consents:read",
    "consents:write",
    # The tenant's audit trail (`GET /v1/audit`); the person's own processing log needs only their token.
    "audit:read",
    # The tenant's GPU quotas and what it uses of them (`GET /v1/usage`).
    "usage:read",
    TENANT_WIDE_SCOPE,
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


class CallerToken:
    """Whose calls a channel makes: the dev token its gRPC calls carry, switched with `act_as`.

    For tests (and tools) that call the services directly, as the gateway does with the token of the
    request it handles: `grpc.aio.insecure_channel(..., interceptors=caller.interceptors())`, then
    `caller.act_as("acme")` before the calls of tenant acme (`subject=` for an end user's token).
    """

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.token: str | None = None

    def act_as(
        self,
        tenant: str,
        subject: str | None = None,
        scopes: Sequence[str] = ALL_SCOPES,
        ttl_seconds: int = 3600,
    ) -> str:
        self.token = mint_dev_token(self.secret, tenant, scopes, subject=subject, ttl_seconds=ttl_seconds)
        return self.token

    def anonymous(self) -> None:
        """The calls from now on carry no token."""
        self.token = None

    def interceptors(self) -> list[Any]:
        return token_interceptors(lambda: self.token)
