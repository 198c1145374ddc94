"""`likeness trainings ...`, `likeness renders ...` and `likeness styles`: a subject's model and headshots.

likeness trainings start SUBJECT [--steps N]  # prints the id
likeness trainings list SUBJECT [--limit N] [--cursor C | --all] [--json]
likeness trainings get ID
likeness trainings watch ID [--poll]          # live progress until done; exit 1 unless succeeded
likeness trainings cancel ID
likeness trainings delete ID                  # the training and its model, every version
likeness renders create SUBJECT (--training ID | --instant) (--style S [--style S...] | --team-look LOOK)
                        [--background B] [--outfit O] [--lighting L]  # catalog ids: likeness styles list
                        [--images-per-style N] [--seed N] [--priority interactive|bulk]  # prints the id
likeness renders list SUBJECT [--limit N] [--cursor C | --all] [--json]
likeness renders get ID
likeness renders watch ID [--poll]
likeness renders image ID IMAGE --out FILE    # one image
likeness renders download ID --out DIR        # every image
likeness renders reject ID IMAGE              # delete one image for good (every version)
likeness renders delete ID                    # the render and every image, every version
likeness styles list [--json]                 # curated styles, backgrounds, outfits, lighting set-ups
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from likeness_cli import api_cli, deletion_commands
from likeness_cli.api_cli import ApiCommands
from likeness_cli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, say
from likeness_cli.progress_bar import ProgressBar
from likeness_client import LikenessClient, Progress, Render, RenderChoices, Training

# ------------------------------------------------------------------------------------------------ progress


def _follow(states: Iterator[Training] | Iterator[Render], label: str) -> int:
    bar = ProgressBar()
    last: Training | Render | None = None
    try:
        for state in states:
            last = state
            progress: Progress = state.progress
            bar.show(progress.step, progress.total_steps, f"{label} {state.status}")
    finally:
        bar.close()
    if last is None:
        return EXIT_FAILED
    if last.status != "succeeded":
        say(f"{label} {last.status}" + (f": {last.error}" if last.error else ""))
        return EXIT_FAILED
    say(f"{label} succeeded")
    return EXIT_OK


def _progress(state: Training | Render) -> str:
    return f"{state.progress.step}/{state.progress.total_steps}"


# ------------------------------------------------------------------------------------------------ trainings


def _start(args: argparse.Namespace, client: LikenessClient) -> int:
    print(client.create_training(args.subject_id, steps=args.steps).id)
    return EXIT_OK


def _training_row(training: Training) -> list[str]:
    return [
        training.id,
        training.status,
        _progress(training),
        api_cli.when(training.created_at),
        training.error or "",
    ]


def _list_trainings(args: argparse.Namespace, client: LikenessClient) -> int:
    columns = ["TRAINING", "STATUS", "STEPS", "CREATED", "ERROR"]
    subject = [args.subject_id]
    return api_cli.show_listing(
        args, client.list_trainings, client.iter_trainings, subject, columns, _training_row
    )


def _watch_training(args: argparse.Namespace, client: LikenessClient) -> int:
    follow = client.poll_training if args.poll else client.watch_training
    return _follow(follow(args.training_id), "training")


def _cancel(args: argparse.Namespace, client: LikenessClient) -> int:
    training = client.cancel_training(args.training_id)
    print(training.status)
    say(f"training {training.id} is {training.status}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ renders


def _create_render(args: argparse.Namespace, client: LikenessClient) -> int:
    if not args.styles and not args.team_look_id:
        raise CliError("give at least one --style, or a --team-look", EXIT_USAGE)
    if not args.training_id and not args.instant:
        raise CliError("give a --training, or --instant (from the latest accepted photo)", EXIT_USAGE)
    accepted = client.create_render(
        args.subject_id,
        instant=args.instant,
        training_id=args.training_id,
        styles=args.styles or (),
        images_per_style=args.images_per_style,
        seed=args.seed,
        team_look_id=args.team_look_id,
        choices=RenderChoices(background=args.background, outfit=args.outfit, lighting=args.lighting),
        priority=args.priority,
    )
    print(accepted.id)
    return EXIT_OK


def _render_row(render: Render) -> list[str]:
    styles = ",".join(render.styles) or (f"look {render.team_look_id}" if render.team_look_id else "-")
    images = str(len(render.images))
    return [
        render.id,
        render.status,
        render.training_id or "instant",
        styles,
        images,
        api_cli.when(render.created_at),
    ]


def _list_renders(args: argparse.Namespace, client: LikenessClient) -> int:
    columns = ["RENDER", "STATUS", "TRAINING", "STYLES", "IMAGES", "CREATED"]
    subject = [args.subject_id]
    return api_cli.show_listing(args, client.list_renders, client.iter_renders, subject, columns, _render_row)


def _watch_render(args: argparse.Namespace, client: LikenessClient) -> int:
    follow = client.poll_render if args.poll else client.watch_render
    return _follow(follow(args.render_id), "render")


def _image(args: argparse.Namespace, client: LikenessClient) -> int:
    out: Path = args.out
    data = client.download_image(args.render_id, args.image_id)
    out.write_bytes(data)
    say(f"image written to {out} ({len(data)} bytes)")
    return EXIT_OK


def _download(args: argparse.Namespace, client: LikenessClient) -> int:
    saved = client.download_render(args.render_id, args.out)
    for path in saved:
        print(path)
    say(f"{len(saved)} images saved to {args.out}")
    return EXIT_OK if saved else EXIT_FAILED


def _styles(args: argparse.Namespace, client: LikenessClient) -> int:
    catalog = client.get_catalog()
    if args.json:
        api_cli.print_json(catalog)
        return EXIT_OK
    rows = [["style", s.id, s.name, s.description] for s in catalog.styles]
    rows += [["background", b.id, b.name, b.preview or b.description] for b in catalog.backgrounds]
    rows += [["outfit", o.id, o.name, o.preview] for o in catalog.outfits]
    rows += [["lighting", light.id, light.name, light.preview] for light in catalog.lighting_setups]
    print(api_cli.table(rows, ["KIND", "ID", "NAME", "DESCRIPTION"]))
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ parser


def _add_reads(
    api: ApiCommands,
    group: api_cli.Commands,
    kind: str,
    listing: api_cli.Handler,
    read: api_cli.Handler,
    watch: api_cli.Handler,
) -> None:
    """`list SUBJECT`, `get ID` and `watch ID [--poll]` of one kind of job."""
    listed = api.command(group, "list", f"a subject's {kind}s, newest first", listing)
    listed.add_argument("subject_id", metavar="SUBJECT")
    api_cli.add_listing_options(listed)
    get = api.command(group, "get", f"print a {kind}'s record", read)
    get.add_argument(f"{kind}_id", metavar="ID")
    follow = api.command(group, "watch", f"show a {kind}'s progress until it ends", watch)
    follow.add_argument(f"{kind}_id", metavar="ID")
    follow.add_argument("--poll", action="store_true", help="poll instead of the event stream")


def register(api: ApiCommands) -> None:
    trainings = api.group("trainings", "trainings of a subject's model")
    start = api.command(trainings, "start", "train the subject's model; prints the training id", _start)
    start.add_argument("subject_id", metavar="SUBJECT")
    start.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    read_training = api_cli.prints(lambda client, args: client.get_training(args.training_id))
    _add_reads(api, trainings, "training", _list_trainings, read_training, _watch_training)
    cancel = api.command(trainings, "cancel", "cancel a training; prints its status", _cancel)
    cancel.add_argument("training_id", metavar="ID")
    deletion_commands.register_training_delete(api, trainings)

    renders = api.group("renders", "headshots rendered from a trained model, or instantly from one photo")
    render = api.command(renders, "create", "render headshots; prints the render id", _create_render)
    render.add_argument("subject_id", metavar="SUBJECT")
    render.add_argument("--training", dest="training_id", help="a succeeded training")
    render.add_argument(
        "--instant",
        action="store_true",
        help="from the latest accepted photo, no training needed (with --training: both combine)",
    )
    render.add_argument("--style", dest="styles", action="append", help="a style id (repeatable)")
    render.add_argument("--team-look", dest="team_look_id", help="a team look (pins style and background)")
    for kind in ("background", "outfit", "lighting"):
        render.add_argument(
            f"--{kind}", help=f"a catalog {kind} id in place of every style's own (styles list)"
        )
    render.add_argument("--images-per-style", type=int, help="images per style (default: the gateway's)")
    render.add_argument("--seed", type=int, help="base seed (default: random)")
    render.add_argument(
        "--priority",
        choices=("interactive", "bulk"),
        help="the tenant's queue it waits in (default: bulk in a team look, else interactive)",
    )
    read_render = api_cli.prints(lambda client, args: client.get_render(args.render_id))
    _add_reads(api, renders, "render", _list_renders, read_render, _watch_render)
    image = api.command(renders, "image", "save one image of a render", _image)
    image.add_argument("render_id", metavar="ID")
    image.add_argument("image_id", metavar="IMAGE")
    image.add_argument("--out", type=Path, required=True, help="the file to write")
    deletion_commands.register_render_deletes(api, renders)
    download = api.command(renders, "download", "save every image of a render", _download)
    download.add_argument("render_id", metavar="ID")
    download.add_argument("--out", type=Path, required=True, help="folder to save the images in")

    styles = api.group("styles", "the curated styles, backgrounds, outfits and lighting")
    api_cli.add_json_option(
        api.command(styles, "list", "the styles a render can use, and the choices it can make", _styles)
    )
