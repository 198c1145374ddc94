"""Every route of the gateway has a call in the client (sync and async alike) and a command in the CLI.

The routes come from the gateway app itself (`create_app(...).openapi()`), so a route added to the gateway
fails these tests until the client declares it (`likeness_client.calls.ROUTES`), both clients call it and
a `likeness` command does. Each call and command is run against a transport that records its first request
and stops it there, so what counts is the request actually sent, not what the code says it sends.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import io
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import PIL.Image
import pytest

from gateway.app import create_app
from gateway.config import GatewaySettings
from likeness_cli import api_cli
from likeness_cli.main import build_parser, main
from likeness_client import AsyncLikenessClient, ConsentPolicy, LikenessClient, Retention, TeamLookSpec
from likeness_client.calls import ROUTES, Route


def _tiny_jpeg() -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (8, 8), (128, 96, 64)).save(buffer, format="JPEG")
    return buffer.getvalue()


HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
BASE = "http://gateway.test"
#: A real (tiny) JPEG: uploads prepare each photo before sending it (`likeness_client.photo_prep`).
PHOTO = _tiny_jpeg()
IDS = {"subject": "sub_1", "training": "trn_1", "render": "ren_1", "image": "img_1", "erasure": "era_1"}

#: Every public method of the clients, with arguments; the test also checks this lists them all.
CLIENT_CALLS: dict[str, tuple[Any, ...]] = {
    "create_subject": (),
    "get_subject": ("sub_1",),
    "get_subject_summary": ("sub_1",),
    "list_processing_log": ("sub_1",),
    "iter_processing_log": ("sub_1",),
    "list_audit_trail": (),
    "iter_audit_trail": (),
    "get_usage": (),
    "list_subjects": (),
    "iter_subjects": (),
    "erase_subject": ("sub_1",),
    "get_erasure": ("era_1",),
    "get_erasure_receipt": ("era_1",),
    "get_receipt_keys": (),
    "stream_export": ("sub_1",),
    "export_subject": ("sub_1", "unused.zip"),
    "upload_photos": ("sub_1", [("me.jpg", PHOTO)]),
    "list_photos": ("sub_1",),
    "iter_photos": ("sub_1",),
    "create_training": ("sub_1",),
    "get_training": ("trn_1",),
    "list_trainings": ("sub_1",),
    "iter_trainings": ("sub_1",),
    "cancel_training": ("trn_1",),
    "watch_training": ("trn_1",),
    "poll_training": ("trn_1",),
    "create_render": ("sub_1",),
    "get_render": ("ren_1",),
    "list_renders": ("sub_1",),
    "iter_renders": ("sub_1",),
    "watch_render": ("ren_1",),
    "poll_render": ("ren_1",),
    "stream_image": ("ren_1", "img_1"),
    "download_image": ("ren_1", "img_1"),
    "download_render": ("ren_1", "unused"),
    "reject_image": ("ren_1", "img_1"),
    "delete_render": ("ren_1",),
    "delete_training": ("trn_1",),
    "delete_photo": ("sub_1", "pho_1"),
    "rectify_subject": ("sub_1",),
    "list_styles": (),
    "get_catalog": (),
    "list_team_looks": (),
    "get_team_look": ("sales",),
    "put_team_look": ("sales", TeamLookSpec(name="Sales", style="linkedin", background="light_gray")),
    "delete_team_look": ("sales",),
    "get_retention_policy": (),
    "set_retention_policy": (Retention(photos_days=7),),
    "grant_consent": ("sub_1", "headshots", "2026-01"),
    "list_consents": ("sub_1",),
    "withdraw_consent": ("sub_1", "headshots"),
    "get_consent_policy": (),
    "set_consent_policy": (ConsentPolicy(grants_need_subject_token=True),),
    "get_health": (),
    "get_readiness": (),
}
CLIENT_KEYWORDS: dict[str, dict[str, Any]] = {
    "rectify_subject": {"external_ref": "user-1"},
    "create_subject": {"purpose": "headshots", "policy_version": "1"},
    "create_render": {"training_id": "trn_1", "styles": ["linkedin"]},
}
#: Methods that send nothing of their own.
CLIENT_PLUMBING = {"close", "aclose", "from_env"}

#: Every API command of `likeness`, with its arguments (the connection options are added).
CLI_COMMANDS: dict[tuple[str, ...], list[str]] = {
    ("subjects", "create"): [],
    ("subjects", "list"): ["--all"],
    ("subjects", "get"): ["sub_1"],
    ("subjects", "summary"): ["sub_1"],
    ("subjects", "log"): ["sub_1", "--all"],
    ("audit", "trail"): [],
    ("usage",): [],
    ("subjects", "export"): ["sub_1", "--out", "{tmp}/x.zip"],
    ("subjects", "erase"): ["sub_1"],
    ("photos", "upload"): ["sub_1", "{tmp}/photos"],
    ("photos", "list"): ["sub_1"],
    ("trainings", "start"): ["sub_1"],
    ("trainings", "list"): ["sub_1"],
    ("trainings", "get"): ["trn_1"],
    ("trainings", "watch"): ["trn_1"],
    ("trainings", "cancel"): ["trn_1"],
    ("renders", "create"): ["sub_1", "--training", "trn_1", "--team-look", "sales"],
    ("renders", "list"): ["sub_1"],
    ("renders", "get"): ["ren_1"],
    ("renders", "watch"): ["ren_1"],
    ("renders", "image"): ["ren_1", "img_1", "--out", "{tmp}/one.png"],
    ("renders", "download"): ["ren_1", "--out", "{tmp}/images"],
    ("renders", "reject"): ["ren_1", "img_1"],
    ("renders", "delete"): ["ren_1"],
    ("trainings", "delete"): ["trn_1"],
    ("photos", "delete"): ["sub_1", "pho_1", "--with-models"],
    ("subjects", "rectify"): ["sub_1", "--external-ref", "user-1"],
    ("styles", "list"): [],
    ("team-looks", "list"): [],
    ("team-looks", "get"): ["sales"],
    ("team-looks", "set"): ["sales", "--name", "Sales", "--style", "linkedin", "--background", "gray"],
    ("team-looks", "delete"): ["sales"],
    ("retention", "policy", "get"): [],
    ("retention", "policy", "set"): ["--photos-days", "7"],
    ("consents", "grant"): ["sub_1", "--purpose", "headshots", "--policy-version", "2026-01"],
    ("consents", "list"): ["sub_1"],
    ("consents", "withdraw"): ["sub_1", "--purpose", "team_look"],
    ("consents", "policy", "get"): [],
    ("consents", "policy", "set"): ["--grants-need-subject-token"],
    ("erasures", "get"): ["era_1"],
    ("erasures", "receipt"): ["era_1"],
    ("erasures", "keys"): [],
    ("gateway", "health"): [],
    ("gateway", "ready"): [],
}


class Reached(Exception):
    """Raised by the transport in place of an answer: the request has been seen, nothing more is needed."""

    def __init__(self, request: httpx.Request) -> None:
        super().__init__(f"{request.method} {request.url.path}")
        self.request = request


def stop(request: httpx.Request) -> httpx.Response:
    raise Reached(request)


def route_of(request: httpx.Request) -> tuple[str, str]:
    matching = [route for route in ROUTES if route.matches(request.method, request.url.path)]
    assert len(matching) == 1, f"{request.method} {request.url.path} matches {matching}"
    return key(matching[0])


def key(route: Route) -> tuple[str, str]:
    return (route.method, route.template)


@pytest.fixture(scope="module")
def gateway_routes() -> set[tuple[str, str]]:
    paths = create_app(GatewaySettings()).openapi()["paths"]
    found = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    assert ("GET", "/v1/subjects/{subject_id}") in found, "the OpenAPI document lists the routes"
    return {(method, path) for method, path in found if method.lower() in HTTP_METHODS}


def public_methods(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, callable) if not name.startswith("_")}


def test_the_client_declares_every_route_of_the_gateway(gateway_routes: set[tuple[str, str]]) -> None:
    declared = [key(route) for route in ROUTES]
    assert len(declared) == len(set(declared)), "a route is declared twice"
    assert set(declared) - gateway_routes == set(), "the client declares routes the gateway does not serve"
    assert gateway_routes - set(declared) == set(), "gateway routes the client does not declare"


def test_both_clients_have_the_same_methods_and_this_test_calls_them_all() -> None:
    sync_methods = public_methods(LikenessClient) - CLIENT_PLUMBING
    assert sync_methods == public_methods(AsyncLikenessClient) - CLIENT_PLUMBING
    assert sync_methods == set(CLIENT_CALLS), "add the new method to CLIENT_CALLS"


def _start(result: Any) -> None:
    """Sends the first request of what a method returned: a value (sent already), a stream, an iterator."""
    if isinstance(result, AbstractContextManager):
        with result:
            pass
    elif isinstance(result, Iterator):
        next(result)


async def _start_async(result: Any) -> None:
    if inspect.isawaitable(result):
        await result
    elif isinstance(result, AbstractAsyncContextManager):
        async with result:
            pass
    elif isinstance(result, AsyncIterator):
        await anext(result)


def _sync_first_request(name: str) -> httpx.Request:
    client = LikenessClient(BASE, "tok", transport=httpx.MockTransport(stop))
    with client, pytest.raises(Reached) as reached:
        _start(getattr(client, name)(*CLIENT_CALLS[name], **CLIENT_KEYWORDS.get(name, {})))
    return reached.value.request


async def _async_first_request(name: str) -> httpx.Request:
    client = AsyncLikenessClient(BASE, "tok", transport=httpx.MockTransport(stop))
    async with client:
        with pytest.raises(Reached) as reached:
            await _start_async(getattr(client, name)(*CLIENT_CALLS[name], **CLIENT_KEYWORDS.get(name, {})))
    return reached.value.request


async def test_both_clients_call_every_route_of_the_gateway(gateway_routes: set[tuple[str, str]]) -> None:
    called_sync = {route_of(_sync_first_request(name)) for name in CLIENT_CALLS}
    called_async = {route_of(await _async_first_request(name)) for name in CLIENT_CALLS}
    assert gateway_routes - called_sync == set(), "no method of LikenessClient calls these"
    assert gateway_routes - called_async == set(), "no method of AsyncLikenessClient calls these"


def api_commands() -> set[tuple[str, ...]]:
    """The leaf commands of `likeness` that talk to the gateway (those with the --url option)."""
    found: set[tuple[str, ...]] = set()

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers:
            if any("--url" in action.option_strings for action in parser._actions):
                found.add(path)
            return
        for name, child in subparsers[0].choices.items():
            walk(child, (*path, name))

    walk(build_parser(), ())
    return found


def test_this_test_runs_every_api_command() -> None:
    assert api_commands() == set(CLI_COMMANDS), "add the new command to CLI_COMMANDS"


def test_the_cli_has_a_command_for_every_route_of_the_gateway(
    gateway_routes: set[tuple[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        api_cli, "LikenessClient", functools.partial(LikenessClient, transport=httpx.MockTransport(stop))
    )
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "me.jpg").write_bytes(PHOTO)
    connection = ["--url", BASE, "--token", "tok", "--project-dir", str(tmp_path)]
    called: dict[tuple[str, str], tuple[str, ...]] = {}
    for command, arguments in CLI_COMMANDS.items():
        argv = [*command, *(argument.format(tmp=tmp_path) for argument in arguments), *connection]
        with pytest.raises(Reached) as reached:
            main(argv)
        called.setdefault(route_of(reached.value.request), command)
    assert gateway_routes - set(called) == set(), "no `likeness` command calls these"
