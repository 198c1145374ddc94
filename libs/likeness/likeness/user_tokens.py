"""End users' bearer tokens: every rule that turns a JWT into a `Principal`, shared by the gateway (which
authenticates each HTTP request) and by every service (which verifies the same token again on each gRPC
call it receives, so a compromised gateway cannot speak for anyone it holds no token of).

Development tokens are HS256 with the `jwt_dev_secret` secret (minted by `likeness dev token`); production
tokens are RS256/ES256 from the tenant identity provider, checked against its JWKS (`LIKENESS_JWKS_URL`,
fetched and cached, or `LIKENESS_JWKS_FILE`). The algorithm is chosen by where the key comes from, never by
the token: an HS256 token is refused whenever no dev secret is configured (always, in production), and an
asymmetric one whenever no JWKS is.

What a token may touch:
- with `sub` (an end user's token): that one subject of its tenant, nothing else;
- without `sub` but with the scope `tenant:all`: every subject of its tenant;
- without either: only what names no subject (opening a subject, the tenant's policies and looks, the
  style catalog). A token without `sub` used to mean tenant-wide authority; that now takes the explicit
  grant, so a token minted for one job (say, opening subjects) cannot read anyone.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from likeness.config import CommonSettings
from likeness.ids import is_valid_id, is_valid_tenant

DEV_ALGORITHMS = ["HS256"]
JWKS_ALGORITHMS = ["RS256", "ES256"]
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "tenant"]
#: The scope that gives a token without `sub` authority over every subject of its tenant.
TENANT_WIDE_SCOPE = "tenant:all"
#: Verified tokens kept per process, and the longest a verification is trusted without checking again.
CACHE_ENTRIES = 10_000
CACHE_SECONDS = 300.0
#: How long fetched JWKS keys are kept before the identity provider is asked again.
JWKS_LIFESPAN_SECONDS = 300


@dataclass(frozen=True)
class Principal:
    tenant: str
    scopes: frozenset[str]
    #: Set for an end-user token: the one subject it may touch.
    subject: str | None = None
    #: The token's `exp` (seconds since the epoch): long streams end when their token does.
    expires_at: float | None = None
    #: The OAuth client the token was issued to (`client_id`, else `azp`), when it names one in a harmless
    #: form: the gateway's limits count a tenant's back ends apart by it. Never authority over anything.
    client: str | None = None

    @property
    def tenant_wide(self) -> bool:
        """Whether it may touch every subject of its tenant (`tenant:all`, and no `sub` binding it)."""
        return self.subject is None and TENANT_WIDE_SCOPE in self.scopes

    @property
    def touches_subjects(self) -> bool:
        """Whether it may touch any existing subject at all (an end user's own, or the tenant's)."""
        return self.subject is not None or self.tenant_wide

    def can_touch(self, subject_id: str) -> bool:
        if self.subject is not None:
            return self.subject == subject_id
        return self.tenant_wide


class TokenRefused(Exception):
    """The token is not one this deployment accepts (the message says why, for the caller)."""


class TokenKeysUnavailable(Exception):
    """The identity provider's keys cannot be fetched right now: the token may well be good."""


class TokenVerifier:
    """Turns a bearer token into a `Principal`, or raises `TokenRefused` / `TokenKeysUnavailable`.

    A verified token is remembered (bounded LRU) until it expires, or for at most `CACHE_SECONDS`: clients
    send the same token with every request, and a signature check costs more than the rest of a lookup.
    Refusals are never cached, so a token is refused as soon as it is invalid.
    """

    def __init__(self, settings: CommonSettings) -> None:
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        secret = settings.jwt_dev_secret.get_secret_value()
        self._dev_secret = secret if secret and not settings.is_production else None
        self._jwks_client = (
            jwt.PyJWKClient(settings.jwks_url, lifespan=JWKS_LIFESPAN_SECONDS) if settings.jwks_url else None
        )
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
                raise TokenRefused("The token is not signed by a trusted key.")
        except jwt.ExpiredSignatureError:
            raise TokenRefused("The token has expired.") from None
        except jwt.PyJWKClientConnectionError:
            raise TokenKeysUnavailable("Token keys cannot be fetched right now; try again.") from None
        except (jwt.PyJWTError, KeyError, ValueError):
            raise TokenRefused("The token is invalid.") from None
        return principal_of(claims)

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


def principal_of(claims: dict[str, Any]) -> Principal:
    """The principal of verified claims (`TokenRefused` when a claim we rely on is malformed)."""
    tenant = claims.get("tenant")
    if not isinstance(tenant, str) or not is_valid_tenant(tenant):
        raise TokenRefused("The token names no valid tenant.")
    raw_scopes = claims.get("scope", "")
    if isinstance(raw_scopes, str):
        scopes = frozenset(raw_scopes.split())
    elif isinstance(raw_scopes, list) and all(isinstance(scope, str) for scope in raw_scopes):
        scopes = frozenset(raw_scopes)
    else:
        raise TokenRefused("The token's scope claim is malformed.")
    subject = claims.get("sub")
    if subject is not None and (not isinstance(subject, str) or not is_valid_id(subject, "sub")):
        raise TokenRefused("The token's subject is not a subject id.")
    expires = claims.get("exp")
    expires_at = float(expires) if isinstance(expires, int | float) else None
    return Principal(
        tenant=tenant, scopes=scopes, subject=subject, expires_at=expires_at, client=_client_of(claims)
    )


#: What a client id may look like to be kept (it only tells callers apart; anything else is ignored).
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:@/-]{1,128}", re.ASCII)


def _client_of(claims: dict[str, Any]) -> str | None:
    for claim in ("client_id", "azp"):
        value = claims.get(claim)
        if isinstance(value, str) and _CLIENT_ID.fullmatch(value):
            return value
    return None
