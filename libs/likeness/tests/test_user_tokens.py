"""The shared token rules (`likeness.user_tokens`) and the gRPC side of them (`likeness.grpc_user_tokens`,
`likeness.method_access`): a real grpc.aio server and channel, calls carrying real signed tokens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import jwt
import pytest
from pydantic import ValidationError

from likeness.config import CommonSettings
from likeness.grpc_user_tokens import (
    UserTokenInterceptor,
    bearer_token,
    forward_user_token,
    token_metadata,
    user_token_interceptors,
)
from likeness.method_access import (
    Binding,
    MethodRule,
    current_principal,
    public,
    refusal,
    subject,
    tenant,
    tenant_wide,
    token_rules,
)
from likeness.user_tokens import TENANT_WIDE_SCOPE, Principal, TokenRefused, TokenVerifier
from likeness.v1 import ingest_pb2, ingest_pb2_grpc, renderer_pb2, renderer_pb2_grpc

SECRET = "user-token-tests-secret-0123456789abcdef"
SUB = "sub_01jbz3k7q8m2x4v6n9p0r5t7wy"
OTHER_SUB = "sub_01jbz3k7q8m2x4v6n9p0r5t7wz"


def mint(
    tenant_: str = "acme", scopes: tuple[str, ...] = ("renders:read",), secret: str = SECRET, **claims: Any
) -> str:
    now = int(time.time())
    body = {"iss": "likeness-dev", "aud": "likeness", "iat": now, "exp": now + 600, "tenant": tenant_}
    body |= {"scope": " ".join(scopes), **claims}
    return jwt.encode(body, secret, algorithm="HS256")


def verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier(CommonSettings(jwt_dev_secret=SECRET, **settings))


# ---------------------------------------------------------------------------------------------- principals


def test_only_sub_or_the_tenant_wide_grant_reaches_a_subject() -> None:
    narrow = Principal("acme", frozenset({"subjects:read"}))
    wide = Principal("acme", frozenset({"subjects:read", TENANT_WIDE_SCOPE}))
    end_user = Principal("acme", frozenset({"subjects:read", TENANT_WIDE_SCOPE}), subject=SUB)
    assert not narrow.can_touch(SUB), "no sub no longer means every subject"
    assert not narrow.touches_subjects
    assert wide.can_touch(SUB)
    assert wide.can_touch(OTHER_SUB)
    assert wide.tenant_wide
    assert end_user.can_touch(SUB)
    assert not end_user.can_touch(OTHER_SUB), "sub binds, whatever the scopes"
    assert not end_user.tenant_wide


@pytest.mark.parametrize(
    ("rule", "principal", "refused"),
    [
        (subject("renders:read"), Principal("acme", frozenset({"renders:read"})), True),
        (subject("renders:read"), Principal("acme", frozenset({"renders:read", TENANT_WIDE_SCOPE})), False),
        (subject("renders:read"), Principal("acme", frozenset({"renders:read"}), subject=SUB), False),
        (subject("renders:read"), Principal("acme", frozenset({TENANT_WIDE_SCOPE})), True),
        (tenant("looks:write"), Principal("acme", frozenset({"looks:write"})), False),
        (tenant("looks:write"), Principal("acme", frozenset({"looks:write"}), subject=SUB), True),
        (
            tenant("looks:read", end_user=True),
            Principal("acme", frozenset({"looks:read"}), subject=SUB),
            False,
        ),
        (tenant_wide("subjects:read"), Principal("acme", frozenset({"subjects:read"}), subject=SUB), True),
        (
            tenant_wide("subjects:read"),
            Principal("acme", frozenset({"subjects:read", TENANT_WIDE_SCOPE}), subject=SUB),
            True,
        ),
    ],
)
def test_method_rules(rule: MethodRule, principal: Principal, refused: bool) -> None:
    assert (refusal(rule, principal) is not None) == refused


def test_a_table_must_classify_every_method_of_its_service() -> None:
    service = renderer_pb2.DESCRIPTOR.services_by_name["RendererService"]
    with pytest.raises(ValueError, match="without a token rule"):
        token_rules(service, {"GetRender": subject("renders:read")})


# ---------------------------------------------------------------------------------------------- verifier


async def test_a_dev_token_becomes_its_principal() -> None:
    principal = await verifier().verify(mint(scopes=("renders:read", TENANT_WIDE_SCOPE), sub=SUB))
    assert principal == Principal(
        "acme", frozenset({"renders:read", TENANT_WIDE_SCOPE}), SUB, principal.expires_at
    )


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (lambda: mint(exp=int(time.time()) - 120), "expired"),
        (lambda: mint(iss="someone-else"), "invalid"),
        (lambda: mint(aud="another-api"), "invalid"),
        (lambda: mint(tenant_="Not A Tenant"), "tenant"),
        (lambda: mint(sub="alice"), "subject"),
        (lambda: mint(secret="x" * 40), "invalid"),
        (lambda: "not-a-jwt", "invalid"),
    ],
)
async def test_tokens_outside_the_rules_are_refused(token: Any, why: str) -> None:
    with pytest.raises(TokenRefused, match=why):
        await verifier().verify(token())


async def test_production_never_accepts_a_dev_token() -> None:
    settings = CommonSettings.model_construct(
        env="production",
        jwt_dev_secret=CommonSettings(jwt_dev_secret=SECRET).jwt_dev_secret,
        jwt_issuer="likeness-dev",
        jwt_audience="likeness",
        jwt_leeway_seconds=30,
        jwks_url="",
        jwks_file="",
    )
    with pytest.raises(TokenRefused, match="trusted key"):
        await TokenVerifier(settings).verify(mint())


PRODUCTION = {
    "env": "production",
    "nats_url": "tls://nats.example:4222",
    "s3_endpoint": "https://s3.example",
    "vault_addr": "https://vault.example:8200",
    "vault_auth": "kubernetes",
    "s3_secret_key": "x" * 40,
    "jwks_url": "https://idp.example/.well-known/jwks.json",
    "jwt_issuer": "https://idp.example/",
    "jwt_audience": "https://api.example/",
}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"jwks_url": ""}, "JWKS"),
        ({"jwks_url": "http://idp.example/jwks.json"}, "https"),
        ({"jwt_dev_secret": "x" * 40}, "DEV_SECRET"),
        ({"jwt_issuer": "likeness-dev"}, "ISSUER"),
    ],
)
def test_every_service_refuses_development_tokens_in_production(
    change: dict[str, str], complaint: str
) -> None:
    assert CommonSettings.model_validate(PRODUCTION).is_production
    with pytest.raises(ValidationError, match=complaint):
        CommonSettings.model_validate(PRODUCTION | change)


# ---------------------------------------------------------------------------------------------- over gRPC

RENDERER = renderer_pb2.DESCRIPTOR.services_by_name["RendererService"].full_name
INGEST = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name
RULES = {
    RENDERER: {
        "GetRender": subject("renders:read"),
        "FetchImage": subject("renders:read"),
        "ListStyles": public(),
        "ListTeamLooks": tenant("looks:read", end_user=True),
        "ListRenders": tenant_wide("renders:read"),
        # PutTeamLook is left out on purpose: an unclassified method is refused.
    },
    INGEST: {"SanitizePhoto": subject("photos:write")},
}


class Renderer(renderer_pb2_grpc.RendererServiceServicer):
    """Answers with whose call it ran as: the principal's tenant and subject in the render record."""

    async def GetRender(self, request: Any, context: Any) -> renderer_pb2.GetRenderResponse:
        await asyncio.sleep(0.01)  # let concurrent calls interleave
        principal = current_principal()
        assert principal is not None
        return renderer_pb2.GetRenderResponse(
            render=renderer_pb2.Render(tenant=principal.tenant, subject_id=principal.subject or "")
        )

    async def FetchImage(self, request: Any, context: Any) -> AsyncIterator[renderer_pb2.FetchImageResponse]:
        for _ in range(2):
            principal = current_principal()
            assert principal is not None
            yield renderer_pb2.FetchImageResponse(chunk=principal.tenant.encode())

    async def ListStyles(self, request: Any, context: Any) -> renderer_pb2.ListStylesResponse:
        assert current_principal() is None, "a public method runs with no one's token"
        return renderer_pb2.ListStylesResponse(styles=[renderer_pb2.Style(id="corporate")])

    async def ListTeamLooks(self, request: Any, context: Any) -> renderer_pb2.ListTeamLooksResponse:
        return renderer_pb2.ListTeamLooksResponse()

    async def ListRenders(self, request: Any, context: Any) -> renderer_pb2.ListRendersResponse:
        return renderer_pb2.ListRendersResponse()

    async def PutTeamLook(self, request: Any, context: Any) -> renderer_pb2.PutTeamLookResponse:
        raise AssertionError("never reached: the method has no token rule")


class Ingest(ingest_pb2_grpc.IngestServiceServicer):
    async def SanitizePhoto(self, request_iterator: Any, context: Any) -> ingest_pb2.SanitizePhotoResponse:
        principal = current_principal()
        assert principal is not None
        async for _ in request_iterator:
            pass
        return ingest_pb2.SanitizePhotoResponse(photo=ingest_pb2.Photo(tenant=principal.tenant))


@pytest.fixture
async def channel(server_process: None) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[UserTokenInterceptor(verifier(), RULES)])
    renderer_pb2_grpc.add_RendererServiceServicer_to_server(Renderer(), server)
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(Ingest(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as opened:
        yield opened
    await server.stop(None)


def code_of(failure: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str | None]:
    codes = [value for key, value in failure.trailing_metadata() or () if key == "likeness-error-code"]
    return failure.code(), (str(codes[0]) if codes else None)


WIDE = ("renders:read", "looks:read", "photos:write", TENANT_WIDE_SCOPE)


@pytest.mark.parametrize(
    ("token", "request_", "expected"),
    [
        (None, {"tenant": "acme"}, (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated")),
        ("garbage", {"tenant": "acme"}, (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated")),
        (
            mint(scopes=WIDE, exp=int(time.time()) - 120),
            {"tenant": "acme"},
            (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"),
        ),
        (
            mint(scopes=("looks:read", TENANT_WIDE_SCOPE)),
            {"tenant": "acme"},
            (grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope"),
        ),
        (
            mint(scopes=("renders:read",)),
            {"tenant": "acme"},
            (grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope"),
        ),
        (
            mint("globex", scopes=WIDE),
            {"tenant": "acme"},
            (grpc.StatusCode.PERMISSION_DENIED, "wrong_tenant"),
        ),
    ],
    ids=["no-token", "garbage", "expired", "missing-scope", "no-tenant-wide-grant", "other-tenant"],
)
async def test_a_data_bearing_call_needs_the_right_token(
    channel: grpc.aio.Channel, token: str | None, request_: dict[str, str], expected: tuple[Any, str]
) -> None:
    stub = renderer_pb2_grpc.RendererServiceStub(channel)
    metadata = token_metadata(token) if token else None
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.GetRender(renderer_pb2.GetRenderRequest(**request_), metadata=metadata)
    assert code_of(refused.value) == expected


async def test_the_method_runs_as_the_verified_principal(channel: grpc.aio.Channel) -> None:
    stub = renderer_pb2_grpc.RendererServiceStub(channel)
    end_user = token_metadata(mint(scopes=WIDE, sub=SUB))
    render = (await stub.GetRender(renderer_pb2.GetRenderRequest(tenant="acme"), metadata=end_user)).render
    assert (render.tenant, render.subject_id) == ("acme", SUB)
    chunks = [
        m.chunk
        async for m in stub.FetchImage(renderer_pb2.FetchImageRequest(tenant="acme"), metadata=end_user)
    ]
    assert chunks == [b"acme", b"acme"], "a streamed answer keeps its principal from first to last message"

    async def upload() -> AsyncIterator[ingest_pb2.SanitizePhotoRequest]:
        yield ingest_pb2.SanitizePhotoRequest(
            header=ingest_pb2.PhotoUploadHeader(tenant="acme", subject_id=SUB)
        )
        yield ingest_pb2.SanitizePhotoRequest(chunk=b"pixels")

    ingest = ingest_pb2_grpc.IngestServiceStub(channel)
    assert (await ingest.SanitizePhoto(upload(), metadata=end_user)).photo.tenant == "acme"


async def test_concurrent_calls_never_share_a_principal(channel: grpc.aio.Channel) -> None:
    stub = renderer_pb2_grpc.RendererServiceStub(channel)
    tenants = [f"t{n}" for n in range(20)]
    answers = await asyncio.gather(
        *(
            stub.GetRender(
                renderer_pb2.GetRenderRequest(tenant=name), metadata=token_metadata(mint(name, scopes=WIDE))
            )
            for name in tenants
        )
    )
    assert [answer.render.tenant for answer in answers] == tenants


async def test_an_end_user_token_naming_another_subject_is_refused(channel: grpc.aio.Channel) -> None:
    stub = renderer_pb2_grpc.RendererServiceStub(channel)
    end_user = token_metadata(mint(scopes=WIDE, sub=SUB))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListRenders(
            renderer_pb2.ListRendersRequest(tenant="acme", subject_id=OTHER_SUB), metadata=end_user
        )
    assert code_of(refused.value)[0] == grpc.StatusCode.PERMISSION_DENIED, (
        "listing needs tenant-wide authority"
    )
    wide = token_metadata(mint(scopes=WIDE))
    await stub.ListRenders(
        renderer_pb2.ListRendersRequest(tenant="acme", subject_id=OTHER_SUB), metadata=wide
    )


async def test_public_methods_need_no_token_and_unclassified_ones_are_refused(
    channel: grpc.aio.Channel,
) -> None:
    stub = renderer_pb2_grpc.RendererServiceStub(channel)
    assert [s.id for s in (await stub.ListStyles(renderer_pb2.ListStylesRequest())).styles] == ["corporate"]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.PutTeamLook(
            renderer_pb2.PutTeamLookRequest(tenant="acme"), metadata=token_metadata(mint(scopes=WIDE))
        )
    assert code_of(refused.value) == (grpc.StatusCode.PERMISSION_DENIED, "method_not_classified")


async def test_the_forwarded_token_rides_every_call_of_the_request(server_process: None) -> None:
    """The gateway's side: a token set for the request reaches the service as metadata, and only it."""
    server = grpc.aio.server(interceptors=[UserTokenInterceptor(verifier(), RULES)])
    renderer_pb2_grpc.add_RendererServiceServicer_to_server(Renderer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", interceptors=user_token_interceptors()
        ) as chan:
            stub = renderer_pb2_grpc.RendererServiceStub(chan)

            async def request_of(name: str) -> str:
                forward_user_token(mint(name, scopes=WIDE))  # as the gateway's auth dependency does
                render = (await stub.GetRender(renderer_pb2.GetRenderRequest(tenant=name))).render
                return render.tenant

            names = [f"r{n}" for n in range(10)]
            # Each request is a task of its own (as each HTTP request is): their tokens never mix.
            assert await asyncio.gather(*(asyncio.create_task(request_of(n)) for n in names)) == names
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.GetRender(renderer_pb2.GetRenderRequest(tenant="acme"))  # nothing forwarded here
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server.stop(None)


def test_bearer_tokens_are_read_from_the_authorization_metadata() -> None:
    assert bearer_token((("authorization", "Bearer abc"),)) == "abc"
    assert bearer_token((("authorization", b"bearer abc"),)) == "abc"
    assert bearer_token((("authorization", "Basic abc"),)) is None
    assert bearer_token((("x-other", "Bearer abc"),)) is None
    assert Binding.PUBLIC not in {rule.binding for rule in RULES[INGEST].values()}
