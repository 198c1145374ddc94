"""Bearer tokens: who is calling (tenant, scopes, and for an end-user token, their own subject).

Development tokens are HS256 with `LIKENESS_JWT_DEV_SECRET` (minted by `likeness token`); production
tokens are RS256/ES256 from the tenant identity provider, checked against its JWKS. The algorithm is
chosen by where the key comes from, never by the token: an HS256 token is refused whenever no dev secret
is configured, and an asymmetric one whenever no JWKS is.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from gateway.config import GatewaySettings
from gateway.errors import ApiError, unavailable
from likeness.ids import is_valid_id, is_valid_tenant

DEV_ALGORITHMS = ["HS256"]
JWKS_ALGORITHMS = ["RS256", "ES256"]
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "tenant"]


@dataclass(frozen=True)
class Principal:
    tenant: str
    scopes: frozenset[str]
    #: Set for an end-user token: the one subject it may touch.
    subject: str | None = None
    #: The token's `exp` (seconds since the epoch): long streams end when their token does.
    expires_at: float | None = None

    def can_touch(self, subject_id: str) -> bool:
        return self.subject is None or self.subject == subject_id


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


#: Verified tokens kept per process, and the longest a verification is trusted without checking again.
CACHE_ENTRIES = 10_000
CACHE_SECONDS = 300.0


class TokenVerifier:
    """Turns a bearer token into a `Principal`, or raises a 401 `ApiError`.

    A verified token is remembered (bounded LRU) until it expires, or for at most `CACHE_SECONDS`: clients
    send the same token with every request, and a signature check costs more than the rest of a lookup.
    Refusals are never cached, so a token is refused as soon as it is invalid.
    """

    def __init__(self, settings: GatewaySettings) -> None:
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        secret = settings.jwt_dev_secret.get_secret_value()
        self._dev_secret = secret if secret and not settings.is_production else None
        self._jwks_client = jwt.PyJWKClient(settings.jwks_url, lifespan=300) if settings.jwks_url else None
        self._jwks_file = (
            jwt.PyJWKSet.from_dict(json.loads(Path(settings.jwks_file).read_text()))
            if settings.jwks_file
            else None
        )

    async def verify(self, token: str) -> Principal:
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            principal, valid_until = cached
            if now < valid_until:
                self._cache.move_to_end(token)
                return principal
            del self._cache[token]
        principal = await self._verify(token)
        valid_until = min(now + CACHE_SECONDS, principal.expires_at or now)
        if valid_until > now:
            self._cache[token] = (principal, valid_until)
            if len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm in DEV_ALGORITHMS and self._dev_secret is not None:
                claims = self._decode(token, self._dev_secret, DEV_ALGORITHMS)
            elif algorithm in JWKS_ALGORITHMS and (self._jwks_client or self._jwks_file):
                key = await self._signing_key(token, header)
                claims = self._decode(token, key, JWKS_ALGORITHMS)
            else:
                raise unauthenticated("The token is not signed by a trusted key.")
        except jwt.ExpiredSignatureError:
            raise unauthenticated("The token has expired.") from None
        except jwt.PyJWKClientConnectionError:
            # The identity provider is unreachable: the token may well be good, so this is no 401.
            raise unavailable("Token keys cannot be fetched right now; try again.") from None
        except (jwt.PyJWTError, KeyError, ValueError):
            raise unauthenticated("The token is invalid.") from None
        return _principal(claims)

    async def _signing_key(self, token: str, header: dict[str, Any]) -> jwt.PyJWK:
        if self._jwks_client is not None:
            # The client fetches with urllib (blocking) when its cache is cold or the key id is new.
            return await asyncio.to_thread(self._jwks_client.get_signing_key_from_jwt, token)
        assert self._jwks_file is not None
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise jwt.InvalidTokenError("no key id")
        return self._jwks_file[kid]

    def _decode(self, token: str, key: str | jwt.PyJWK, algorithms: list[str]) -> dict[str, Any]:
        return jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=self._audience,
            issuer=self._issuer,
            leeway=self._leeway,
            options={"require": REQUIRED_CLAIMS},
        )


def _principal(claims: dict[str, Any]) -> Principal:
    tenant = claims.get("tenant")
    if not isinstance(tenant, str) or not is_valid_tenant(tenant):
        raise unauthenticated("The token names no valid tenant.")
    raw_scopes = claims.get("scope", "")
    if isinstance(raw_scopes, str):
        scopes = frozenset(raw_scopes.split())
    elif isinstance(raw_scopes, list) and all(isinstance(scope, str) for scope in raw_scopes):
        scopes = frozenset(raw_scopes)
    else:
        raise unauthenticated("The token's scope claim is malformed.")
    subject = claims.get("sub")
    if subject is not None and (not isinstance(subject, str) or not is_valid_id(subject, "sub")):
        raise unauthenticated("The token's subject is not a subject id.")
    expires = claims.get("exp")
    expires_at = float(expires) if isinstance(expires, int | float) else None
    return Principal(tenant=tenant, scopes=scopes, subject=subject, expires_at=expires_at)
