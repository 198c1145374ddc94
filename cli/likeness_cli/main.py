"""The `likeness` command: the gateway's API, verification tools and operator tools.

Command groups that live in other installed packages join through the `likeness.commands` entry point
group (a callable that takes the subparsers and adds its own): the dev kit adds `likeness dev ...` and
`likeness demo` that way, so this package never imports it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from likeness_cli import model_commands
from likeness_cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, CliError, say
from likeness_cli.models import TINY_FAMILIES, ModelError, write_tiny_model

#: Entry point group of command plugins: `name = "package.module:register"`, register(subparsers).
PLUGIN_GROUP = "likeness.commands"


def _model_tiny(args: argparse.Namespace) -> int:
    out: Path = args.out
    began = time.monotonic()
    write_tiny_model(out, seed=args.seed, family=args.family)
    say(f"tiny {args.family} model written to {out} in {time.monotonic() - began:.1f}s")
    return EXIT_OK


def _add_model_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    model = commands.add_parser("model", help="base models").add_subparsers(
        dest="model_command", metavar="SUBCOMMAND", required=True
    )
    tiny = model.add_parser(
        "tiny", help="write the tiny random-weight model (fast to train and render on CPU; images are noise)"
    )
    tiny.add_argument("--out", type=Path, required=True, help="output folder")
    tiny.add_argument("--seed", type=int, help="seed of the random weights")
    tiny.add_argument(
        "--family",
        choices=TINY_FAMILIES,
        default="sd15",
        help="the base model family it is shaped like (sdxl: two text encoders, pooled embeddings)",
    )
    tiny.set_defaults(handler=_model_tiny)
    model_commands.register(model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="likeness", description="Likeness command line.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Commands whose modules live beside their features (each adds its own subparsers).
    from likeness_cli import api_commands, bootstrap_commands, receipts, verify_image

    api_commands.register(commands)
    bootstrap_commands.register(commands)
    receipts.register(commands)
    verify_image.register(commands)
    _add_model_commands(commands)
    for plugin in sorted(entry_points(group=PLUGIN_GROUP), key=lambda point: point.name):
        plugin.load()(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except CliError as error:
        say(f"error: {error}")
        return error.code
    except (ModelError, FileNotFoundError) as error:
        say(f"error: {error}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        say("interrupted")
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
