"""Team looks: pinned from catalog ids only, stored per tenant in the renderer's KV, resolved into renders."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from likeness.config import CommonSettings
from likeness.runtime import Platform
from likeness_dev.dev_pki import DevCertificateAuthority
from likeness_dev.infra import Infra
from likeness_dev.testing import provisioned_kv
from likeness_ml.subject import SUBJECT_PHRASE
from renderer.catalog import Choices
from renderer.styles import load_backgrounds, load_styles
from renderer.team_looks import TeamLook, TeamLookError, TeamLooks, plan_for


@pytest.fixture(scope="module")
async def looks(infra: Infra) -> AsyncIterator[TeamLooks]:
    env = infra.endpoints.as_env()
    settings = CommonSettings.model_validate({k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()})
    platform = await Platform.connect(settings, "team-looks-test")
    bucket = f"team_looks_test_{uuid.uuid4().hex[:8]}"
    yield TeamLooks(await provisioned_kv(platform.bus, bucket), load_styles(), load_backgrounds())
    await platform.bus.js.delete_key_value(bucket)
    await platform.close()


async def test_a_look_is_pinned_read_listed_and_removed_per_tenant(looks: TeamLooks) -> None:
    pinned = await looks.put("acme", "sales-emea", "Sales EMEA", "corporate", "navy_blue", "fixed", seed=42)
    await looks.put("acme", "engineering", "Engineering", "startup_casual", "loft_office", "per_render")
    await looks.put("globex", "sales-emea", "Theirs", "resume", "white", "fixed")
    assert await looks.get("acme", "sales-emea") == pinned
    assert [look.id for look in await looks.list_looks("acme")] == ["engineering", "sales-emea"]
    assert [look.name for look in await looks.list_looks("globex")] == ["Theirs"]
    assert await looks.delete("acme", "engineering")
    assert not await looks.delete("acme", "engineering")
    assert await looks.get("acme", "engineering") is None
    assert (await looks.get("globex", "sales-emea")) is not None


async def test_replacing_a_look_keeps_its_creation_time_and_seed(looks: TeamLooks) -> None:
    first = await looks.put("acme", "board", "Board", "executive", "office_skyline", "fixed")
    second = await looks.put("acme", "board", "Board of directors", "executive", "black", "fixed")
    assert second.seed == first.seed
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at
    assert second.background == "black"


@pytest.mark.parametrize(
    ("look_id", "style", "background", "policy", "seed", "code"),
    [
        ("Sales EMEA", "corporate", "white", "fixed", None, "invalid_team_look_id"),
        ("sales", "anime", "white", "fixed", None, "unknown_style"),
        ("sales", "corporate", "a beach at sunset, nsfw", "fixed", None, "unknown_background"),
        ("sales", "corporate", "white", "sometimes", None, "invalid_seed_policy"),
        ("sales", "corporate", "white", "fixed", -1, "invalid_seed"),
    ],
)
async def test_looks_are_built_from_catalog_ids_only(
    looks: TeamLooks, look_id: str, style: str, background: str, policy: str, seed: int | None, code: str
) -> None:
    with pytest.raises(TeamLookError) as refused:
        await looks.put("acme", look_id, "Sales", style, background, policy, seed)
    assert refused.value.code == code
    assert await looks.get("acme", look_id) is None


async def test_a_fixed_look_gives_every_member_the_same_style_background_and_seeds(looks: TeamLooks) -> None:
    await looks.put("acme", "marketing", "Marketing", "creative", "warm_beige", "fixed", seed=1234)
    alice = await looks.plan("acme", "marketing", [], None)
    bob = await looks.plan("acme", "marketing", ["creative"], 1234)
    assert alice == bob
    assert (alice.styles, alice.choices.background, alice.seed) == (["creative"], "warm_beige", 1234)
    with pytest.raises(TeamLookError, match="pins the seed"):
        await looks.plan("acme", "marketing", [], 99)
    with pytest.raises(TeamLookError, match="look's style only"):
        await looks.plan("acme", "marketing", ["resume"], None)
    with pytest.raises(TeamLookError) as missing:
        await looks.plan("globex", "marketing", [], None)
    assert missing.value.code == "team_look_not_found"


def test_a_per_render_look_pins_style_and_background_but_not_the_seed() -> None:
    look = TeamLook.model_validate(
        {
            "tenant": "acme",
            "id": "support",
            "name": "Support",
            "style": "linkedin",
            "background": "light_gray",
            "seed_policy": "per_render",
            "seed": 5,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        }
    )
    assert plan_for(look, [], 77).seed == 77
    assert plan_for(look, [], None).styles == ["linkedin"]


def test_a_looks_background_goes_into_the_styles_prompt() -> None:
    style, background = load_styles()["corporate"], load_backgrounds()["navy_blue"]
    prompt = style.with_choices(Choices(background=background)).prompt(SUBJECT_PHRASE)
    assert background.prompt in prompt
    assert style.background not in prompt
    assert style.attire in prompt


def test_the_catalog_offers_every_styles_own_background() -> None:
    offered = {background.prompt for background in load_backgrounds().values()}
    assert {style.background for style in load_styles().values()} <= offered


async def test_team_looks_over_grpc(looks: TeamLooks, infra: Infra, dev_ca: DevCertificateAuthority) -> None:
    """The RPCs a tenant's admin uses: put, get, list, delete, with catalog-only fields and clear codes.

    Through the user-token interceptor, as deployed: the calls carry tenant initech's token."""
    import socket

    import grpc

    from likeness.grpc_tls import secure_channel, static_server_credentials
    from likeness.grpc_user_tokens import user_token_interceptor
    from likeness.v1 import renderer_pb2, renderer_pb2_grpc
    from likeness_dev.tokens import CallerToken
    from renderer.config import RendererSettings
    from renderer.service import RendererServicer

    secret = "team-looks-tests-token-secret-0123456789"
    env = infra.endpoints.as_env()
    settings = RendererSettings.model_validate(
        {k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()} | {"jwt_dev_secret": secret}
    )
    platform = await Platform.connect(settings, "team-looks-rpc-test")
    server = grpc.aio.server(interceptors=[user_token_interceptor(settings)])
    caller = CallerToken(secret)
    caller.act_as("initech", scopes=["looks:read", "looks:write"])
    servicer = RendererServicer(platform, None, load_styles(), settings, looks=looks)  # type: ignore[arg-type]
    renderer_pb2_grpc.add_RendererServiceServicer_to_server(servicer, server)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server.add_secure_port(f"127.0.0.1:{port}", static_server_credentials(dev_ca.issue("renderer").material))
    await server.start()
    try:
        gateway_tls = dev_ca.issue("gateway").material
        async with secure_channel(
            f"127.0.0.1:{port}", gateway_tls, "renderer", interceptors=caller.interceptors()
        ) as channel:
            stub = renderer_pb2_grpc.RendererServiceStub(channel)
            put = await stub.PutTeamLook(
                renderer_pb2.PutTeamLookRequest(
                    tenant="initech",
                    look_id="sales",
                    name="Sales",
                    style="corporate",
                    background="white",
                    seed_policy=renderer_pb2.SEED_POLICY_FIXED,
                    seed=7,
                )
            )
            assert put.look.seed == 7
            assert put.look.seed_policy == renderer_pb2.SEED_POLICY_FIXED
            got = await stub.GetTeamLook(renderer_pb2.GetTeamLookRequest(tenant="initech", look_id="sales"))
            assert got.look == put.look
            listed = await stub.ListTeamLooks(renderer_pb2.ListTeamLooksRequest(tenant="initech"))
            assert [look.id for look in listed.looks] == ["sales"]
            styles = await stub.ListStyles(renderer_pb2.ListStylesRequest())
            assert len(styles.styles) >= 8
            assert "white" in {b.id for b in styles.backgrounds}
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.PutTeamLook(
                    renderer_pb2.PutTeamLookRequest(
                        tenant="initech",
                        look_id="x",
                        name="X",
                        style="anime",
                        background="white",
                        seed_policy=renderer_pb2.SEED_POLICY_PER_RENDER,
                    )
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert ("likeness-error-code", "unknown_style") in tuple(refused.value.trailing_metadata() or ())
            await stub.DeleteTeamLook(renderer_pb2.DeleteTeamLookRequest(tenant="initech", look_id="sales"))
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await stub.GetTeamLook(renderer_pb2.GetTeamLookRequest(tenant="initech", look_id="sales"))
            assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await server.stop(0)
        await platform.close()


async def test_a_render_with_an_unknown_choice_is_refused_by_the_renderer_itself(
    looks: TeamLooks, infra: Infra, dev_ca: DevCertificateAuthority
) -> None:
    """Not only the gateway: SubmitRender itself refuses an unknown background, outfit or lighting id,
    naming it, before anything is recorded or queued."""
    import socket

    import grpc

    from likeness.grpc_tls import secure_channel, static_server_credentials
    from likeness.grpc_user_tokens import user_token_interceptor
    from likeness.v1 import renderer_pb2, renderer_pb2_grpc
    from likeness_dev.tokens import CallerToken
    from renderer.config import RendererSettings
    from renderer.service import RendererServicer

    secret = "catalog-tests-token-secret-0123456789ab"
    env = infra.endpoints.as_env()
    settings = RendererSettings.model_validate(
        {k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()} | {"jwt_dev_secret": secret}
    )
    platform = await Platform.connect(settings, "catalog-rpc-test")
    server = grpc.aio.server(interceptors=[user_token_interceptor(settings)])
    caller = CallerToken(secret)
    subject_id = "sub_01jbz3k7q8m2x4v6n9p0r5t7wy"
    caller.act_as("initech", subject=subject_id, scopes=["renders:write"])  # the person's own token
    # No records: a refused request must not reach them (None would raise if it did).
    servicer = RendererServicer(platform, None, load_styles(), settings, looks=looks)  # type: ignore[arg-type]
    renderer_pb2_grpc.add_RendererServiceServicer_to_server(servicer, server)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server.add_secure_port(f"127.0.0.1:{port}", static_server_credentials(dev_ca.issue("renderer").material))
    await server.start()
    try:
        async with secure_channel(
            f"127.0.0.1:{port}",
            dev_ca.issue("gateway").material,
            "renderer",
            interceptors=caller.interceptors(),
        ) as channel:
            stub = renderer_pb2_grpc.RendererServiceStub(channel)
            for field, value in (("background", "moon_base"), ("outfit", "tuxedo"), ("lighting", "neon")):
                request = renderer_pb2.SubmitRenderRequest(
                    tenant="initech",
                    subject_id=subject_id,
                    training_id="trn_01jbz3p5b7d9f1h3k5m7q9s1vw",
                    styles=["corporate"],
                )
                setattr(request, field, value)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.SubmitRender(request)
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                trailers: tuple[object, ...] = tuple(refused.value.trailing_metadata() or ())
                assert ("likeness-error-code", "unknown_catalog_id") in trailers
                assert f"{field} {value!r}" in (refused.value.details() or "")
            styles = await stub.ListStyles(renderer_pb2.ListStylesRequest())
            assert len(styles.outfits) >= 10
            assert len(styles.lighting_setups) >= 5
            assert all(option.preview for option in styles.backgrounds)
            assert all(option.preview for option in styles.outfits)
    finally:
        await server.stop(0)
        await platform.close()
