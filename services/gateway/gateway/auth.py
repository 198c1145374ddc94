"""Bearer tokens at the gateway: the shared rules of `likeness.user_tokens`, answered as HTTP errors.

Every token rule (signature, issuer, audience, expiry, claims, what a token without `sub` may touch) lives
in `likeness.user_tokens`, so the gateway and the services that verify the same token again on every gRPC
call can never disagree. Here a refusal becomes a 401 with its `WWW-Authenticate` challenge, and an
identity provider out of reach a 503.
"""

from __future__ import annotations

from gateway.config import GatewaySettings
from gateway.errors import ApiError, unavailable
from likeness import user_tokens
from likeness.user_tokens import TENANT_WIDE_SCOPE, Principal, TokenKeysUnavailable, TokenRefused

__all__ = [
    "EDGE_PRINCIPAL_KEY",
    "TENANT_WIDE_SCOPE",
    "Principal",
    "TokenVerifier",
    "bearer_credentials",
    "insufficient_scope",
    "unauthenticated",
]

#: Where the edge (`gateway.edge`) leaves the request's verified (credentials, principal) for the route's
#: dependency, so a token is verified once per request (a key of the ASGI scope's "state").
EDGE_PRINCIPAL_KEY = "likeness_edge_principal"


def unauthenticated(message: str, *, token_given: bool = True) -> ApiError:
    challenge = 'Bearer realm="likeness"' + (', error="invalid_token"' if token_given else "")
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": challenge})


def insufficient_scope(scope: str) -> ApiError:
    challenge = f'Bearer realm="likeness", error="insufficient_scope", scope="{scope}"'
    return ApiError(
        403,
        "insufficient_scope",
        f"This token lacks the {scope} scope.",
        headers={"WWW-Authenticate": challenge},
    )


def bearer_credentials(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or the 401 of a request without one."""
    scheme, _, credentials = (authorization or "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        raise unauthenticated("A bearer token is required.", token_given=False)
    return credentials


class TokenVerifier:
    """Turns a bearer token into a `Principal`, or raises a 401 (or, keys out of reach, a 503) `ApiError`.

    Verified tokens are cached by the shared verifier (see `likeness.user_tokens.TokenVerifier`)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._verifier = user_tokens.TokenVerifier(settings)

    async def verify(self, token: str) -> Principal:
        try:
            return await self._verifier.verify(token)
        except TokenRefused as refused:
            raise unauthenticated(str(refused)) from None
        except TokenKeysUnavailable as away:
            # The identity provider is unreachable: the token may well be good, so this is no 401.
            raise unavailable(str(away)) from None
