"""`likeness subjects|photos|trainings|renders ...`: the gateway's API from the command line, through the
typed client (`likeness_client`).

    likeness subjects create [--external-ref REF] [--purpose P] [--policy-version V]   # prints the id
    likeness subjects get ID
    likeness subjects export ID --out FILE.zip
    likeness subjects erase ID
    likeness photos upload SUBJECT DIR            # progress bar, then a table of verdicts
    likeness trainings start SUBJECT [--steps N]  # prints the id
    likeness trainings watch ID [--poll]          # live progress until done
    likeness renders create SUBJECT --training ID --style S [--style S...] [--images-per-style N] [--seed N]
    likeness renders watch ID [--poll]
    likeness renders download ID --out DIR

The gateway and token come from `--url`/`--token`, else `LIKENESS_GATEWAY_URL`/`LIKENESS_TOKEN`, else the
local dev stack's `.likeness/dev.env` (`likeness dev up` writes its URL and a dev token there). Failures
print the API's message and code and exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from likeness_cli.local_settings import find_project_dir, read_dev_env, state_dir_of
from likeness_client import (
    ApiError,
    ClientSettings,
    LikenessClient,
    LikenessError,
    Photo,
    Progress,
    Render,
    Training,
    UploadRejected,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: What `photos upload DIR` picks up (the gateway decides the real format by the content).
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp"})
#: Errors that would fail every other photo of the folder the same way: stop at the first.
FATAL_STATUSES = frozenset({401, 403, 404, 410})


class Usage(Exception):
    """Bad arguments or missing settings (exit 2)."""


def _say(message: str) -> None:
    print(f"likeness: {message}", file=sys.stderr, flush=True)


def _settings(args: argparse.Namespace) -> ClientSettings:
    project: Path = args.project_dir.resolve() if args.project_dir else find_project_dir()
    env = read_dev_env(state_dir_of(project)) | {
        k: v for k, v in os.environ.items() if k.startswith("LIKENESS_")
    }
    if args.url:
        env["LIKENESS_GATEWAY_URL"] = args.url
    if args.token:
        env["LIKENESS_TOKEN"] = args.token
    try:
        return ClientSettings.from_env(env)
    except LikenessError as error:
        raise Usage(f"{error} (or pass --url/--token, or start a dev stack: likeness dev up)") from error


def _client(args: argparse.Namespace) -> LikenessClient:
    settings = _settings(args)
    return LikenessClient(settings.base_url, settings.token, timeout=args.timeout)


def _run(handler: Callable[[argparse.Namespace, LikenessClient], int]) -> Callable[[argparse.Namespace], int]:
    """Opens the client, runs the command, turns the client's errors into a message and an exit code."""

    def run(args: argparse.Namespace) -> int:
        try:
            with _client(args) as client:
                return handler(args, client)
        except Usage as error:
            _say(f"error: {error}")
            return EXIT_USAGE
        except ApiError as error:
            _say(f"error: {error.message} ({error.code}, HTTP {error.status})")
            if error.request_id:
                _say(f"request id: {error.request_id}")
            return EXIT_FAILED
        except LikenessError as error:
            _say(f"error: {error}")
            return EXIT_FAILED
        except OSError as error:
            _say(f"error: {error}")
            return EXIT_FAILED

    return run


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


# ------------------------------------------------------------------------------------------------ progress


class ProgressBar:
    """One line redrawn in place on a terminal; a line per change elsewhere (logs, CI)."""

    def __init__(self, out: TextIO | None = None, width: int = 30) -> None:
        # Looked up at call time, not bound as a default: sys.stderr may have been replaced since import.
        self.out: TextIO = out if out is not None else sys.stderr
        self.width = width
        self.live = self.out.isatty()
        self._last = ""

    def show(self, done: int, total: int, label: str) -> None:
        filled = int(self.width * done / total) if total > 0 else 0
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {label}"
        if line == self._last:
            return
        self._last = line
        if self.live:
            self.out.write("\r" + line[:200].ljust(len(line)) + "\x1b[K")
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.live and self._last:
            self.out.write("\n")
            self.out.flush()


def _table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in (headers, *rows)
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ subjects


def _subjects_create(args: argparse.Namespace, client: LikenessClient) -> int:
    subject = client.create_subject(
        purpose=args.purpose, policy_version=args.policy_version, external_ref=args.external_ref
    )
    if args.json:
        _print_json(subject.model_dump(mode="json"))
    else:
        print(subject.id)
    return EXIT_OK


def _subjects_get(args: argparse.Namespace, client: LikenessClient) -> int:
    _print_json(client.get_subject(args.subject_id).model_dump(mode="json"))
    return EXIT_OK


def _subjects_export(args: argparse.Namespace, client: LikenessClient) -> int:
    out: Path = args.out
    size = client.export_subject(args.subject_id, out)
    _say(f"export written to {out} ({size} bytes)")
    return EXIT_OK


def _subjects_erase(args: argparse.Namespace, client: LikenessClient) -> int:
    accepted = client.erase_subject(args.subject_id)
    print(accepted.erasure_id)
    _say(f"erasure {accepted.status}: the key is destroyed first, then every object, record and event")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ photos


def _photo_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise Usage(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    if not files:
        raise Usage(f"no photos in {folder} (looked for {', '.join(sorted(PHOTO_SUFFIXES))})")
    return files


def _verdict_row(name: str, photo: Photo) -> list[str]:
    reasons = "; ".join(f"{r.code}: {r.message}" for r in photo.reasons)
    return [name, photo.status, photo.id, reasons]


def _photos_upload(args: argparse.Namespace, client: LikenessClient) -> int:
    files = _photo_files(args.folder)
    bar = ProgressBar()
    rows: list[list[str]] = []
    accepted = 0
    try:
        for index, path in enumerate(files):
            bar.show(index, len(files), path.name)
            try:
                verdicts = client.upload_photos(args.subject_id, [path]).photos
            except UploadRejected as rejected:
                verdicts = rejected.photos
            except ApiError as error:
                if error.status in FATAL_STATUSES:
                    raise
                rows.append([path.name, "error", "", f"{error.code}: {error.message}"])
                continue
            for photo in verdicts:
                accepted += photo.accepted
                rows.append(_verdict_row(path.name, photo))
        bar.show(len(files), len(files), "done")
    finally:
        bar.close()
    print(_table(rows, ["FILE", "VERDICT", "PHOTO", "REASONS"]))
    _say(f"{accepted} of {len(files)} photos accepted")
    return EXIT_OK if accepted else EXIT_FAILED


# ------------------------------------------------------------------------------------------------ jobs


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
        _say(f"{label} {last.status}" + (f": {last.error}" if last.error else ""))
        return EXIT_FAILED
    _say(f"{label} succeeded")
    return EXIT_OK


def _trainings_start(args: argparse.Namespace, client: LikenessClient) -> int:
    accepted = client.create_training(args.subject_id, steps=args.steps)
    print(accepted.id)
    return EXIT_OK


def _trainings_watch(args: argparse.Namespace, client: LikenessClient) -> int:
    states = client.poll_training(args.training_id) if args.poll else client.watch_training(args.training_id)
    return _follow(states, "training")


def _renders_create(args: argparse.Namespace, client: LikenessClient) -> int:
    accepted = client.create_render(
        args.subject_id,
        training_id=args.training_id,
        styles=args.styles,
        images_per_style=args.images_per_style,
        seed=args.seed,
    )
    print(accepted.id)
    return EXIT_OK


def _renders_watch(args: argparse.Namespace, client: LikenessClient) -> int:
    states = client.poll_render(args.render_id) if args.poll else client.watch_render(args.render_id)
    return _follow(states, "render")


def _renders_download(args: argparse.Namespace, client: LikenessClient) -> int:
    saved = client.download_render(args.render_id, args.out)
    for path in saved:
        print(path)
    _say(f"{len(saved)} images saved to {args.out}")
    return EXIT_OK if saved else EXIT_FAILED


# ------------------------------------------------------------------------------------------------ parser


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--url", help="gateway URL (default: LIKENESS_GATEWAY_URL, else the dev stack's)")
    connection.add_argument("--token", help="bearer token (default: LIKENESS_TOKEN, else the dev stack's)")
    connection.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: 60)")
    connection.add_argument("--project-dir", type=Path, help="project whose .likeness/dev.env to read")

    def group(name: str, help_text: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        return commands.add_parser(name, help=help_text).add_subparsers(
            dest=f"{name}_command", metavar="SUBCOMMAND", required=True
        )

    def command(
        where: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        help_text: str,
        handler: Callable[[argparse.Namespace, LikenessClient], int],
    ) -> argparse.ArgumentParser:
        parser = where.add_parser(name, parents=[connection], help=help_text)
        parser.set_defaults(handler=_run(handler))
        return parser

    subjects = group("subjects", "subjects (people): open, read, export, erase")
    create = command(subjects, "create", "open a subject with consent; prints its id", _subjects_create)
    create.add_argument("--external-ref", help="your own reference (stored only as a keyed hash)")
    create.add_argument("--purpose", default="headshots", help="consent purpose (default: headshots)")
    create.add_argument("--policy-version", default="2026-01", help="policy version consented to")
    create.add_argument("--json", action="store_true", help="print the whole record")
    get = command(subjects, "get", "print a subject's record", _subjects_get)
    get.add_argument("subject_id", metavar="ID")
    export = command(subjects, "export", "download everything held about a subject (zip)", _subjects_export)
    export.add_argument("subject_id", metavar="ID")
    export.add_argument("--out", type=Path, required=True, help="the zip file to write")
    erase = command(
        subjects, "erase", "erase a subject (key destroyed first); prints the erasure id", _subjects_erase
    )
    erase.add_argument("subject_id", metavar="ID")

    photos = group("photos", "photos of a subject")
    upload = command(photos, "upload", "upload every photo of a folder; prints each verdict", _photos_upload)
    upload.add_argument("subject_id", metavar="SUBJECT")
    upload.add_argument("folder", metavar="DIR", type=Path)

    trainings = group("trainings", "trainings of a subject's model")
    start = command(trainings, "start", "train the subject's model; prints the training id", _trainings_start)
    start.add_argument("subject_id", metavar="SUBJECT")
    start.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    watch = command(trainings, "watch", "show a training's progress until it ends", _trainings_watch)
    watch.add_argument("training_id", metavar="ID")
    watch.add_argument("--poll", action="store_true", help="poll instead of the event stream")

    renders = group("renders", "headshots rendered from a trained model")
    render = command(renders, "create", "render headshots; prints the render id", _renders_create)
    render.add_argument("subject_id", metavar="SUBJECT")
    render.add_argument("--training", dest="training_id", required=True, help="a succeeded training")
    render.add_argument(
        "--style", dest="styles", action="append", required=True, help="a style id (repeatable)"
    )
    render.add_argument("--images-per-style", type=int, help="images per style (default: the gateway's)")
    render.add_argument("--seed", type=int, help="base seed (default: random)")
    render_watch = command(renders, "watch", "show a render's progress until it ends", _renders_watch)
    render_watch.add_argument("render_id", metavar="ID")
    render_watch.add_argument("--poll", action="store_true", help="poll instead of the event stream")
    download = command(renders, "download", "save every image of a render", _renders_download)
    download.add_argument("render_id", metavar="ID")
    download.add_argument("--out", type=Path, required=True, help="folder to save the images in")
