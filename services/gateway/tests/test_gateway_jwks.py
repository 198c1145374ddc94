"""Production-style tokens (RS256/ES256 against a JWKS file or URL) and the settings that guard them."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from gateway.config import GatewaySettings, get_settings

ISSUER = "https://idp.example.com/"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk(key: Any, kid: str, algorithm: str) -> dict[str, Any]:
    algorithm_class = jwt.algorithms.RSAAlgorithm if algorithm == "RS256" else jwt.algorithms.ECAlgorithm
    public = json.loads(algorithm_class.to_jwk(key.public_key()))
    return {**public, "kid": kid, "alg": algorithm, "use": "sig"}


JWKS = {"keys": [jwk(RSA_KEY, "rsa-1", "RS256"), jwk(EC_KEY, "ec-1", "ES256")]}


def idp_token(key: Any = RSA_KEY, algorithm: str = "RS256", kid: str = "rsa-1", **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "likeness",
        "iat": now,
        "exp": now + 600,
        "tenant": "acme",
        "scope": "renders:read",
        **overrides,
    }
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


@pytest.fixture
def jwks_file(tmp_path: Path) -> str:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(JWKS))  # public keys only: test fixtures may use disk
    return str(path)


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(JWKS).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.mark.parametrize(
    ("key", "algorithm", "kid"),
    [(RSA_KEY, "RS256", "rsa-1"), (EC_KEY, "ES256", "ec-1")],
    ids=["RS256", "ES256"],
)
async def test_identity_provider_tokens_verify_against_a_jwks_file(
    make_client, jwks_file, key, algorithm, kid
):
    async with make_client(jwks_file=jwks_file, jwt_dev_secret="", jwt_issuer=ISSUER) as client:
        response = await client.get("/v1/styles", headers=bearer(idp_token(key, algorithm, kid)))
    assert response.status_code == 200, response.text


async def test_identity_provider_tokens_verify_against_a_jwks_url(make_client, jwks_url):
    async with make_client(jwks_url=jwks_url, jwt_dev_secret="", jwt_issuer=ISSUER) as client:
        response = await client.get("/v1/styles", headers=bearer(idp_token()))
        assert response.status_code == 200, response.text
        response = await client.get("/v1/styles", headers=bearer(idp_token(kid="unknown")))
        assert response.status_code == 401


async def test_an_unreachable_jwks_url_is_unavailable_not_unauthenticated(make_client):
    async with make_client(
        jwks_url="http://127.0.0.1:9/jwks.json", jwt_dev_secret="", jwt_issuer=ISSUER
    ) as client:
        response = await client.get("/v1/styles", headers=bearer(idp_token()))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"


def _forged_hs256_with_the_public_key() -> str:
    # The classic algorithm confusion: sign HS256 with the RSA public key as the HMAC secret. pyjwt refuses
    # to sign with a PEM key, so the token is assembled by hand.
    import base64
    import hashlib
    import hmac

    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "likeness",
        "iat": now,
        "exp": now + 600,
        "tenant": "acme",
        "scope": "renders:read",
    }
    payload = b64(json.dumps(claims).encode())
    signature = b64(hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: idp_token(iss="https://evil.example.com/"), id="other-issuer"),
        pytest.param(lambda: idp_token(aud="another-api"), id="other-audience"),
        pytest.param(lambda: idp_token(exp=int(time.time()) - 120), id="expired"),
        pytest.param(lambda: idp_token(kid="unknown"), id="unknown-key"),
        pytest.param(lambda: idp_token(key=rsa.generate_private_key(65537, 2048)), id="foreign-key"),
        pytest.param(lambda: idp_token(EC_KEY, "ES256", kid="rsa-1"), id="key-of-another-type"),
        pytest.param(_forged_hs256_with_the_public_key, id="hs256-with-public-key"),
        pytest.param(
            lambda: jwt.encode(
                {"iss": ISSUER, "aud": "likeness", "iat": 0, "exp": 2**40, "tenant": "acme"},
                "gateway-tests-secret-0123456789abcdef",
                algorithm="HS256",
            ),
            id="dev-token-when-no-dev-secret",
        ),
    ],
)
async def test_tokens_the_identity_provider_did_not_issue_are_refused(make_client, jwks_file, bad):
    async with make_client(jwks_file=jwks_file, jwt_dev_secret="", jwt_issuer=ISSUER) as client:
        response = await client.get("/v1/styles", headers=bearer(bad()))
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"


PRODUCTION = {
    "env": "production",
    "idempotency_secret": "i" * 40,
    "s3_secret_key": "s3-production-secret",
    "vault_token": "vault-production-token",
    "nats_url": "tls://nats:4222",
    "s3_endpoint": "https://s3.example.com",
    "vault_addr": "https://vault:8200",
    "jwt_issuer": ISSUER,
    "jwt_audience": "likeness-api",  # production refuses the default audience (issue 15)
}


def test_production_settings_with_a_jwks_are_accepted() -> None:
    settings = GatewaySettings(**PRODUCTION, jwks_url="https://idp.example.com/jwks.json")
    assert settings.is_production


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({}, "JWKS"),
        ({"jwks_url": "http://idp.example.com/jwks.json"}, "https"),
        ({"jwks_file": "/etc/jwks.json", "jwt_dev_secret": "x" * 40}, "DEV_SECRET"),
        ({"jwks_file": "/etc/jwks.json", "jwt_issuer": "likeness-dev"}, "ISSUER"),
    ],
)
def test_production_refuses_development_auth(overrides: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        GatewaySettings(**{**PRODUCTION, **overrides})


def test_development_defaults() -> None:
    settings = GatewaySettings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.http_port, settings.jwt_issuer, settings.jwt_audience) == (
        8080,
        "likeness-dev",
        "likeness",
    )
    assert settings.max_upload_bytes == 25 * 1024 * 1024
    assert settings.max_files_per_request == 20
    assert settings.jwt_leeway_seconds == 30
    assert get_settings() is get_settings()
