"""`likeness subjects ...` and `likeness photos ...`: people and their photos.

likeness subjects create [--external-ref REF] [--purpose headshots|team_look|instant] [--policy-version V]
likeness subjects list [--limit N] [--cursor C | --all] [--json]
likeness subjects get ID
likeness subjects summary ID [--json]         # what is held: per category, each item's deletion date
likeness subjects log ID [--limit N] [--cursor C | --all] [--json]  # who touched their data (own token)
likeness subjects export ID --out FILE.zip
likeness subjects erase ID                    # prints the erasure id (follow it: likeness erasures)
likeness subjects rectify ID (--external-ref REF | --forget-external-ref)
likeness photos upload SUBJECT DIR [--send-originals]  # progress bar, then a table of verdicts
likeness photos list SUBJECT [--limit N] [--cursor C | --all] [--json]
likeness photos delete SUBJECT PHOTO [--with-models] [--json]  # every version; names its models
"""

from __future__ import annotations

import argparse
from pathlib import Path

from likeness_cli import audit_commands, deletion_commands
from likeness_cli.api_cli import (
    ApiCommands,
    add_listing_options,
    print_json,
    prints,
    show_listing,
    table,
    when,
)
from likeness_cli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, say
from likeness_cli.progress_bar import ProgressBar
from likeness_client import (
    PURPOSES,
    ApiError,
    LikenessClient,
    Photo,
    PhotoNotPrepared,
    Subject,
    SubjectSummary,
    UploadRejected,
)

#: What `photos upload DIR` picks up (the gateway decides the real format by the content).
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp"})
#: Errors that would fail every other photo of the folder the same way: stop at the first.
FATAL_STATUSES = frozenset({401, 403, 404, 410})


# ------------------------------------------------------------------------------------------------ subjects


def _create(args: argparse.Namespace, client: LikenessClient) -> int:
    subject = client.create_subject(
        purpose=args.purpose, policy_version=args.policy_version, external_ref=args.external_ref
    )
    if args.json:
        print_json(subject)
    else:
        print(subject.id)
    return EXIT_OK


def _subject_row(subject: Subject) -> list[str]:
    return [subject.id, subject.status, when(subject.created_at), when(subject.delete_by)]


def _list(args: argparse.Namespace, client: LikenessClient) -> int:
    columns = ["ID", "STATUS", "CREATED", "DELETE BY"]
    return show_listing(args, client.list_subjects, client.iter_subjects, [], columns, _subject_row)


def _summary_rows(summary: SubjectSummary) -> list[list[str]]:
    rows = []
    for category in summary.categories:
        rows.append([category.name, str(category.count), str(category.bytes), "", "", ""])
        for item in category.items:
            of = f" ({item.parent_id})" if item.parent_id and item.parent_id != item.id else ""
            stored, due, rule = when(item.stored_at), when(item.delete_by), item.deletion_rule or "-"
            rows.append(["", f"  {item.id}{of}", str(item.bytes), stored, due, rule])
    return rows


def _summary(args: argparse.Namespace, client: LikenessClient) -> int:
    summary = client.get_subject_summary(args.subject_id)
    if args.json:
        print_json(summary)
        return EXIT_OK
    print(table(_summary_rows(summary), ["HELD", "COUNT / ITEM", "BYTES", "STORED", "DELETE BY", "RULE"]))
    grants = ", ".join(f"{grant.purpose} (by {grant.granted_by})" for grant in summary.live_grants)
    say(f"live grants: {grants or 'none'}")
    say(f"last access: {when(summary.last_access_at)} ({summary.last_access_source or 'unknown'})")
    say(f"everything deleted by: {when(summary.delete_by)} ({summary.deletion_rule or '-'})")
    return EXIT_OK


def _export(args: argparse.Namespace, client: LikenessClient) -> int:
    out: Path = args.out
    size = client.export_subject(args.subject_id, out)
    say(f"export written to {out} ({size} bytes)")
    return EXIT_OK


def _erase(args: argparse.Namespace, client: LikenessClient) -> int:
    accepted = client.erase_subject(args.subject_id)
    print(accepted.erasure_id)
    say(f"erasure {accepted.status}: the key is destroyed first, then every object, record and event")
    say(f"follow it: likeness erasures get {accepted.erasure_id} (then: likeness erasures receipt)")
    if accepted.receipt_salt:
        # Shown once and stored nowhere: the receipt holds only a salted hash of the subject id.
        say(f"receipt salt (keep it; it is not shown again): {accepted.receipt_salt}")
        say(f"  check the receipt names this subject: --subject {args.subject_id} --salt SALT")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ photos


def _photo_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise CliError(f"{folder} is not a folder", EXIT_USAGE)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    if not files:
        raise CliError(f"no photos in {folder} (looked for {', '.join(sorted(PHOTO_SUFFIXES))})", EXIT_USAGE)
    return files


def _reasons(photo: Photo) -> str:
    return "; ".join(f"{r.code}: {r.message}" for r in photo.reasons)


def _upload(args: argparse.Namespace, client: LikenessClient) -> int:
    files = _photo_files(args.folder)
    bar = ProgressBar()
    rows: list[list[str]] = []
    accepted = 0
    try:
        for index, path in enumerate(files):
            bar.show(index, len(files), path.name)
            try:
                prepare = not args.send_originals
                verdicts = client.upload_photos(args.subject_id, [path], prepare=prepare).photos
            except PhotoNotPrepared as refused:
                rows.append([path.name, "not sent", "", refused.problem])
                continue
            except UploadRejected as rejected:
                verdicts = rejected.photos
            except ApiError as error:
                if error.status in FATAL_STATUSES:
                    raise
                rows.append([path.name, "error", "", f"{error.code}: {error.message}"])
                continue
            for photo in verdicts:
                accepted += photo.accepted
                rows.append([path.name, photo.status, photo.id, _reasons(photo)])
        bar.show(len(files), len(files), "done")
    finally:
        bar.close()
    print(table(rows, ["FILE", "VERDICT", "PHOTO", "REASONS"]))
    say(f"{accepted} of {len(files)} photos accepted")
    return EXIT_OK if accepted else EXIT_FAILED


def _photo_row(photo: Photo) -> list[str]:
    size = f"{photo.width}x{photo.height}" if photo.width and photo.height else "-"
    return [photo.id, photo.status, size, when(photo.created_at), _reasons(photo)]


def _list_photos(args: argparse.Namespace, client: LikenessClient) -> int:
    columns = ["PHOTO", "VERDICT", "CROP", "UPLOADED", "REASONS"]
    return show_listing(args, client.list_photos, client.iter_photos, [args.subject_id], columns, _photo_row)


# ------------------------------------------------------------------------------------------------ parser


def register(api: ApiCommands) -> None:
    subjects = api.group("subjects", "subjects (people): open, list, read, export, erase")
    create = api.command(subjects, "create", "open a subject with consent; prints its id", _create)
    create.add_argument("--external-ref", help="your own reference (stored only as a keyed hash)")
    create.add_argument(
        "--purpose",
        default="headshots",
        choices=PURPOSES,
        help="the consent given, which becomes the first grant (default: headshots)",
    )
    create.add_argument("--policy-version", default="2026-01", help="policy version consented to")
    create.add_argument("--json", action="store_true", help="print the whole record")
    add_listing_options(api.command(subjects, "list", "the tenant's subjects, newest first", _list))
    get = api.command(
        subjects,
        "get",
        "print a subject's record",
        prints(lambda client, args: client.get_subject(args.subject_id)),
    )
    get.add_argument("subject_id", metavar="ID")
    summary = api.command(
        subjects,
        "summary",
        "what is held about a subject: per category, counts, bytes, each item's deletion date",
        _summary,
    )
    summary.add_argument("subject_id", metavar="ID")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    audit_commands.register_subject_log(api, subjects)
    export = api.command(subjects, "export", "download everything held about a subject (zip)", _export)
    export.add_argument("subject_id", metavar="ID")
    export.add_argument("--out", type=Path, required=True, help="the zip file to write")
    erase = api.command(
        subjects, "erase", "erase a subject (key destroyed first); prints the erasure id", _erase
    )
    erase.add_argument("subject_id", metavar="ID")
    deletion_commands.register_rectify(api, subjects)

    photos = api.group("photos", "photos of a subject")
    upload = api.command(photos, "upload", "upload every photo of a folder; prints each verdict", _upload)
    upload.add_argument("subject_id", metavar="SUBJECT")
    upload.add_argument("folder", metavar="DIR", type=Path)
    upload.add_argument(
        "--send-originals",
        action="store_true",
        help="send the files as they are; by default each photo is turned upright, converted to sRGB, "
        "capped at 3072 px and stripped of all metadata (GPS, camera, thumbnails) before it is sent",
    )
    listed = api.command(photos, "list", "a subject's photos and their verdicts, oldest first", _list_photos)
    listed.add_argument("subject_id", metavar="SUBJECT")
    add_listing_options(listed)
    deletion_commands.register_photo_delete(api, photos)
