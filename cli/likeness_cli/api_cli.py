"""How an API command runs: which gateway and token, the client, and the client's errors as exit codes.

The gateway and token come from `--url`/`--token`, else `LIKENESS_GATEWAY_URL`/`LIKENESS_TOKEN`, else the
local dev stack's `.likeness/dev.env` (`likeness dev up` writes its URL and a dev token there). An API
error prints its message, code, HTTP status and request id and exits 1; bad usage or missing settings
exit 2.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from pydantic import BaseModel

from likeness_cli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, say
from likeness_cli.local_settings import local_environment
from likeness_client import ApiError, ClientSettings, LikenessClient, LikenessError, Page

M = TypeVar("M", bound=BaseModel)
# A string: argparse._SubParsersAction is generic only to type checkers.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler = Callable[[argparse.Namespace, LikenessClient], int]


def _environment(args: argparse.Namespace) -> dict[str, str]:
    env = local_environment(args.project_dir)
    if args.url:
        env["LIKENESS_GATEWAY_URL"] = args.url
    if args.token:
        env["LIKENESS_TOKEN"] = args.token
    return env


def settings_of(args: argparse.Namespace, *, public: bool = False) -> ClientSettings:
    """The gateway and token of this command; a public route needs no token."""
    env = _environment(args)
    try:
        return ClientSettings.from_env(env)
    except LikenessError as error:
        url = env.get("LIKENESS_GATEWAY_URL", "").strip()
        if public and url:
            return ClientSettings(base_url=url, token="")
        hint = "(or pass --url/--token, or start a dev stack: likeness dev up)"
        raise CliError(f"{error} {hint}", EXIT_USAGE) from error


def open_client(args: argparse.Namespace, *, public: bool = False) -> LikenessClient:
    settings = settings_of(args, public=public)
    return LikenessClient(settings.base_url, settings.token, timeout=args.timeout)


def runs(handler: Handler, *, public: bool = False) -> Callable[[argparse.Namespace], int]:
    """Opens the client, runs the command, turns the client's errors into a message and an exit code."""

    def run(args: argparse.Namespace) -> int:
        try:
            with open_client(args, public=public) as client:
                return handler(args, client)
        except ApiError as error:
            say(f"error: {error.message} ({error.code}, HTTP {error.status})")
            if error.request_id:
                say(f"request id: {error.request_id}")
            return EXIT_FAILED
        except (LikenessError, OSError) as error:
            say(f"error: {error}")
            return EXIT_FAILED

    return run


class ApiCommands:
    """Adds command groups and their commands, each with the connection options."""

    def __init__(self, commands: Commands) -> None:
        self.commands = commands
        self.connection = options = argparse.ArgumentParser(add_help=False)
        options.add_argument(
            "--url", help="gateway URL (default: LIKENESS_GATEWAY_URL, else the dev stack's)"
        )
        options.add_argument("--token", help="bearer token (default: LIKENESS_TOKEN, else the dev stack's)")
        options.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: 60)")
        options.add_argument("--project-dir", type=Path, help="project whose .likeness/dev.env to read")

    def group(self, name: str, help_text: str, where: Commands | None = None) -> Commands:
        parser = (where or self.commands).add_parser(name, help=help_text)
        return parser.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND", required=True)

    def command(
        self, where: Commands, name: str, help_text: str, handler: Handler, *, public: bool = False
    ) -> argparse.ArgumentParser:
        parser = where.add_parser(name, parents=[self.connection], help=help_text, description=help_text)
        parser.set_defaults(handler=runs(handler, public=public))
        return parser


# ------------------------------------------------------------------------------------------------ output


def print_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, dict):
        data = value
    else:
        data = [item.model_dump(mode="json") for item in value]
    print(json.dumps(data, indent=2, default=str))


def table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in (headers, *rows)
    ]
    return "\n".join(lines)


def when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment is not None else "-"


def add_json_option(parser: argparse.ArgumentParser, instead_of: str = "a table") -> None:
    parser.add_argument("--json", action="store_true", help=f"print JSON instead of {instead_of}")


def add_listing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, help="items per page, 1..100 (default: the gateway's, 50)")
    pages = parser.add_mutually_exclusive_group()
    pages.add_argument("--cursor", help="the page after this one: a previous page's next cursor")
    pages.add_argument("--all", action="store_true", help="follow every page to the end")
    add_json_option(parser)


def prints(read: Callable[[LikenessClient, argparse.Namespace], BaseModel | Sequence[BaseModel]]) -> Handler:
    """A command that prints what `read` gets from the client, as JSON."""

    def handler(args: argparse.Namespace, client: LikenessClient) -> int:
        print_json(read(client, args))
        return EXIT_OK

    return handler


def show_listing(
    args: argparse.Namespace,
    page: Callable[..., Page[M]],
    every: Callable[..., Iterator[M]],
    ids: Sequence[str],
    columns: Sequence[str],
    row: Callable[[M], Sequence[str]],
) -> int:
    """One page (or `--all`) of a list, as a table or JSON; the next page's cursor goes to standard error.

    `page` and `every` are a client's `list_*` and `iter_*`, called with `ids` (the subject's, or none).
    """
    following: str | None = None
    if args.all:
        items = list(every(*ids, page_size=args.limit))
    else:
        got = page(*ids, limit=args.limit, cursor=args.cursor)
        items, following = got.items, got.next_cursor
    if args.json:
        print_json(items)
    else:
        print(table([row(item) for item in items], columns))
    if following is not None:
        say(f"more: pass --cursor {following} (or --all)")
    return EXIT_OK
