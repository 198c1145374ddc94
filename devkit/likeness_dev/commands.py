"""`likeness dev ...` and `likeness demo`: the dev kit's commands, joined to the `likeness` command
through the `likeness.commands` entry point (the command line itself never imports the dev kit)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from likeness_cli.errors import EXIT_NOT_RUNNING, EXIT_OK, EXIT_USAGE, CliError, say
from likeness_cli.models import TINY_FAMILIES
from likeness_dev.infra import InfraStartError
from likeness_dev.stackfile import (
    DEV_ENV_FILENAME,
    StackFileError,
    find_project_dir,
    read_dev_env,
    read_stack_file,
    state_dir_of,
)
from likeness_dev.tokens import ALL_SCOPES, DEV_TENANT, mint_dev_token, parse_scopes


def _project_dir(args: argparse.Namespace) -> Path:
    given: Path | None = args.project_dir
    return given.resolve() if given is not None else find_project_dir()


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _dev_up(args: argparse.Namespace) -> int:
    from likeness_dev.stack import DevStack

    project_dir = _project_dir(args)
    services = parse_scopes(args.services) if args.services else None
    began = time.monotonic()
    stack = DevStack.start(
        project_dir,
        infra_only=args.infra_only,
        services=services,
        timeout=args.timeout,
        die_with_parent=False,  # the stack outlives this command; `likeness dev down` stops it
        reset=args.reset,
        progress=say,
        base_family=args.base_family,
    )
    say(f"dev stack up in {time.monotonic() - began:.1f}s")
    endpoints = stack.infra.endpoints
    lines = [
        f"  NATS      {endpoints.nats_address}",
        f"  S3        {endpoints.s3_endpoint}  (bucket {endpoints.s3_bucket})",
        f"  Vault API {endpoints.vault_addr}",
    ]
    for service in stack.services.values():
        where = service.address if service.grpc_port else f"metrics {service.metrics_url}"
        if service.http_port:
            where = stack.gateway_url
        lines.append(f"  {service.name:<17} {where}")
    state_dir = stack.state_dir
    lines += [
        "",
        f"Settings, secrets and a dev token: {_relative(state_dir / DEV_ENV_FILENAME)}"
        f"  (load with: set -a; . {_relative(state_dir / DEV_ENV_FILENAME)}; set +a)",
        f"Logs: {_relative(stack.log_dir)}/",
        "Stop with: likeness dev down",
    ]
    print("\n".join(lines))
    return EXIT_OK


def _dev_down(args: argparse.Namespace) -> int:
    from likeness_dev.stack import stop_recorded_stack

    project_dir = _project_dir(args)
    stopped = stop_recorded_stack(project_dir, grace=args.grace)
    if stopped is None:
        say(f"no dev stack recorded in {state_dir_of(project_dir)}; nothing to stop")
    elif stopped:
        say(f"stopped {', '.join(stopped)}")
    else:
        say("the recorded dev stack was no longer running; cleaned up its records")
    return EXIT_OK


def _dev_status(args: argparse.Namespace) -> int:
    from likeness_dev.stack import stack_status

    project_dir = _project_dir(args)
    status = stack_status(project_dir)
    if status is None:
        say(f"no dev stack running in {project_dir} (start one with: likeness dev up)")
        return EXIT_NOT_RUNNING
    record, processes = status
    print(f"{'NAME':<17} {'PID':>8}  {'STATE':<10} DETAIL")
    for process in processes:
        state = "healthy" if process.healthy else ("unhealthy" if process.alive else "stopped")
        detail = "" if process.healthy else f"{process.problem}  (log: {_relative(Path(process.log))})"
        print(f"{process.name:<17} {process.pid:>8}  {state:<10} {detail}")
    if "gateway_url" in record:
        print(f"\ngateway: {record['gateway_url']}")
    if not any(process.alive for process in processes):
        return EXIT_NOT_RUNNING
    return EXIT_OK if all(process.healthy for process in processes) else 1


def _dev_secret(project_dir: Path) -> str:
    state_dir = state_dir_of(project_dir)
    secret = read_dev_env(state_dir).get("LIKENESS_JWT_DEV_SECRET")
    if not secret:
        record = read_stack_file(state_dir)
        secret = None if record is None else record.get("jwt_dev_secret")
    if not secret:
        raise CliError(
            f"no dev stack in {project_dir}: its JWT secret is unknown (start one with: likeness dev up)"
        )
    return str(secret)


def _dev_token(args: argparse.Namespace) -> int:
    scopes = parse_scopes(args.scopes) if args.scopes is not None else ALL_SCOPES
    try:
        token = mint_dev_token(
            _dev_secret(_project_dir(args)), args.tenant, scopes, subject=args.subject, ttl_seconds=args.ttl
        )
    except (ValueError, TypeError) as error:
        raise CliError(str(error), EXIT_USAGE) from error
    print(token)
    return EXIT_OK


def _dev_seed(args: argparse.Namespace) -> int:
    from likeness_dev.journey import JourneyError
    from likeness_dev.seed import seed_dev_stack

    state_dir = state_dir_of(_project_dir(args))
    try:
        seeded = seed_dev_stack(state_dir, photos=args.photos, say=say)
    except JourneyError as error:
        raise CliError(f"seeding failed: {error}") from error
    print("\n".join(f"  {name}={value}" for name, value in seeded.as_env().items()))
    where_to = _relative(state_dir / DEV_ENV_FILENAME)
    print(f"\nAdded to {where_to} (load with: set -a; . {where_to}; set +a): schemathesis.toml reads them.")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from likeness_dev.demo import run_demo
    from likeness_dev.journey import JourneyError

    try:
        run_demo(_project_dir(args), args.out, images_per_style=args.images_per_style)
    except JourneyError as error:
        raise CliError(f"the journey failed: {error}") from error
    return EXIT_OK


def _as_cli_errors(args: argparse.Namespace) -> int:
    """Runs the chosen dev command; the dev kit's own failures become one-line CLI errors."""
    from likeness_dev.stack import StackError

    try:
        code: int = args.dev_handler(args)
    except (StackError, InfraStartError, StackFileError) as error:
        raise CliError(str(error)) from error
    return code


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--project-dir",
        type=Path,
        help="project whose .likeness/ holds the stack (default: the git work tree around the current dir)",
    )

    dev = commands.add_parser("dev", help="the local dev stack (dev kit)").add_subparsers(
        dest="dev_command", metavar="SUBCOMMAND", required=True
    )
    up = dev.add_parser("up", parents=[where], help="start servers and services in the background")
    up.add_argument("--infra-only", action="store_true", help="only NATS, S3 and the Vault API (no services)")
    up.add_argument("--services", help="only these services (comma/space separated), e.g. 'retention,ingest'")
    up.add_argument("--timeout", type=float, help="seconds to wait for the services to be healthy")
    up.add_argument("--reset", action="store_true", help="delete the NATS and S3 data of earlier runs first")
    up.add_argument(
        "--base-family",
        choices=TINY_FAMILIES,
        help="the tiny model trainer and renderer run: shaped like sd15 or sdxl (default: "
        "$LIKENESS_BASE_FAMILY, else sd15; ignored with $LIKENESS_BASE_MODEL)",
    )
    up.set_defaults(handler=_as_cli_errors, dev_handler=_dev_up)

    down = dev.add_parser("down", parents=[where], help="stop everything `dev up` started")
    down.add_argument("--grace", type=float, default=10.0, help="seconds before a process is killed")
    down.set_defaults(handler=_as_cli_errors, dev_handler=_dev_down)

    status = dev.add_parser("status", parents=[where], help="show the processes of the dev stack")
    status.set_defaults(handler=_as_cli_errors, dev_handler=_dev_status)

    token = dev.add_parser("token", parents=[where], help="print a dev JWT for the running stack")
    token.add_argument("--tenant", default=DEV_TENANT, help=f"tenant claim (default: {DEV_TENANT})")
    token.add_argument("--subject", help="sub claim (omitted by default)")
    token.add_argument(
        "--scopes", help="space/comma separated scopes (default: all, `audit:read` and `tenant:all` included)"
    )
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default: 3600)")
    token.set_defaults(handler=_as_cli_errors, dev_handler=_dev_token)

    seed = dev.add_parser(
        "seed",
        parents=[where],
        help="make a trained subject, a render, an erasure and team looks for a contract run (schemathesis)",
    )
    seed.add_argument(
        "--photos",
        type=int,
        default=4,
        help="photos of the trained subject (default: 4, the training minimum)",
    )
    seed.set_defaults(handler=_as_cli_errors, dev_handler=_dev_seed)

    demo = commands.add_parser(
        "demo", parents=[where], help="run the journey on the running dev stack, write a contact sheet"
    )
    demo.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out)")
    demo.add_argument("--images-per-style", type=int, default=4, help="images per style (default: 4)")
    demo.set_defaults(handler=_as_cli_errors, dev_handler=_demo)
