"""`likeness gateway health|ready`: is the gateway up, and are its backends serving (public routes)."""

from __future__ import annotations

import argparse

from likeness_cli.api_cli import ApiCommands, table
from likeness_cli.errors import EXIT_OK
from likeness_client import LikenessClient


def _health(args: argparse.Namespace, client: LikenessClient) -> int:
    print(client.get_health().status)
    return EXIT_OK


def _ready(args: argparse.Namespace, client: LikenessClient) -> int:
    readiness = client.get_readiness()
    rows = [[name, "serving" if serving else "down"] for name, serving in sorted(readiness.backends.items())]
    print(table(rows, ["BACKEND", "STATE"]))
    print(readiness.status)
    return EXIT_OK


def register(api: ApiCommands) -> None:
    gateway = api.group("gateway", "the gateway itself")
    api.command(gateway, "health", "whether the gateway answers (/healthz)", _health, public=True)
    api.command(
        gateway,
        "ready",
        "whether every backend and NATS serve (/readyz); exit 1 when not",
        _ready,
        public=True,
    )
