"""`likeness usage`: the tenant's GPU work against its quotas (a tenant-wide token with `usage:read`).

likeness usage [--json]
"""

from __future__ import annotations

import argparse

from likeness_cli.api_cli import ApiCommands, add_json_option, print_json, table
from likeness_cli.errors import EXIT_OK
from likeness_client import LikenessClient


def _usage(args: argparse.Namespace, client: LikenessClient) -> int:
    usage = client.get_usage()
    if args.json:
        print_json(usage)
        return EXIT_OK
    gpu = usage.gpu_seconds
    rows = [
        ["trainings in flight", str(usage.trainings.in_flight), str(usage.trainings.limit)],
        ["renders in flight", str(usage.renders.in_flight), str(usage.renders.limit)],
        [f"GPU-seconds on {gpu.day} (UTC)", f"{gpu.seconds:.1f}", f"{gpu.limit:g}"],
        ["steps per training", "-", str(usage.max_training_steps)],
    ]
    print(table(rows, ["QUOTA", "USED", "LIMIT"]))
    return EXIT_OK


def register(api: ApiCommands) -> None:
    command = api.command(
        api.commands, "usage", "the tenant's GPU work against its quotas (usage:read, tenant-wide)", _usage
    )
    add_json_option(command)
