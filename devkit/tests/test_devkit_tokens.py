"""Dev JWTs: the claims round-trip through pyjwt with the audience and issuer the gateway checks."""

from __future__ import annotations

import jwt
import pytest

from likeness.user_tokens import TENANT_WIDE_SCOPE
from likeness_dev.tokens import ALL_SCOPES, DEV_AUDIENCE, DEV_ISSUER, mint_dev_token, parse_scopes

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def _decode(token: str, secret: str = SECRET) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(
        token, secret, algorithms=["HS256"], audience=DEV_AUDIENCE, issuer=DEV_ISSUER
    )
    return claims


def test_claims_round_trip() -> None:
    token = mint_dev_token(SECRET, "acme", ["photos:read", "photos:write"], subject="user-1", ttl_seconds=600)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = _decode(token)
    assert claims["iss"] == "likeness-dev"
    assert claims["aud"] == "likeness"
    assert claims["tenant"] == "acme"
    assert claims["scope"] == "photos:read photos:write"
    assert claims["sub"] == "user-1"
    assert isinstance(claims["iat"], int)
    assert isinstance(claims["exp"], int)
    assert claims["exp"] - claims["iat"] == 600
    assert isinstance(claims["jti"], str)
    assert claims["jti"]


def test_subject_only_when_given_and_every_token_is_unique() -> None:
    first = _decode(mint_dev_token(SECRET, "dev", ALL_SCOPES))
    second = _decode(mint_dev_token(SECRET, "dev", ALL_SCOPES))
    assert "sub" not in first
    assert first["jti"] != second["jti"]
    assert str(first["scope"]).split(" ") == list(ALL_SCOPES)


def test_all_scopes_are_every_scope_a_gateway_route_requires() -> None:
    from gateway.app import create_app
    from gateway.config import GatewaySettings

    spec = create_app(GatewaySettings(jwt_dev_secret="x" * 40)).openapi()
    required = {
        scope
        for operations in spec["paths"].values()
        for operation in operations.values()
        for requirement in operation.get("security", [])
        for scopes in requirement.values()
        for scope in scopes
    }
    assert set(ALL_SCOPES) == required | {TENANT_WIDE_SCOPE}, "and the grant over the tenant's subjects"
    assert len(ALL_SCOPES) == len(set(ALL_SCOPES))


def test_other_secret_or_expiry_fails_verification() -> None:
    token = mint_dev_token(SECRET, "dev", ["renders:read"])
    with pytest.raises(jwt.InvalidSignatureError):
        _decode(token, secret=SECRET + "x")
    expired = mint_dev_token(SECRET, "dev", ["renders:read"], ttl_seconds=-60)
    with pytest.raises(jwt.ExpiredSignatureError):
        _decode(expired)


@pytest.mark.parametrize(
    ("secret", "tenant", "scopes", "error"),
    [
        ("", "dev", ["photos:read"], ValueError),
        (SECRET, "", ["photos:read"], ValueError),
        (SECRET, "dev", ["photos:read photos:write"], ValueError),
        (SECRET, "dev", [""], ValueError),
        (SECRET, "dev", "photos:read", TypeError),
    ],
)
def test_malformed_requests_are_refused(
    secret: str, tenant: str, scopes: list[str] | str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        mint_dev_token(secret, tenant, scopes)


def test_scopes_from_the_command_line() -> None:
    assert parse_scopes("photos:read  photos:write,renders:read") == (
        "photos:read",
        "photos:write",
        "renders:read",
    )
    assert parse_scopes("") == ()
