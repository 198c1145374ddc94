"""Per-item deletion and rectification: one photo, one training's model, one render, one image; the
subject's record.

likeness photos delete SUBJECT PHOTO [--with-models] [--json]  # names the models trained on it
likeness trainings delete ID [--json]         # the training and its model (refused while it runs)
likeness renders delete ID [--json]           # the render and every image (refused while it runs)
likeness renders reject ID IMAGE [--json]     # one image
likeness subjects rectify ID (--external-ref REF | --forget-external-ref)

Each deletion removes every stored version of the item and says plainly that it is not a crypto-erase:
the person's key still opens a restored backup of it until the key is destroyed (erasure) or the backup
expires.
"""

from __future__ import annotations

import argparse

from likeness_cli.api_cli import ApiCommands, Commands, add_json_option, print_json, prints
from likeness_cli.errors import EXIT_OK, say
from likeness_client import ItemDeletion, LikenessClient


def show_deletion(args: argparse.Namespace, deleted: ItemDeletion) -> int:
    """The deletion as JSON (`--json`), or in a few lines: what went, the models of a photo, the notice."""
    if args.json:
        print_json(deleted)
        return EXIT_OK
    print(deleted.id)
    say(f"{deleted.kind} {deleted.id} deleted ({deleted.versions_deleted} stored versions removed)")
    for model in deleted.models_trained_on_it or []:
        if model.deleted:
            say(f"  model {model.training_id}, trained on it: deleted too")
        else:
            say(
                f"  model {model.training_id} was trained on it; to delete it: "
                f"likeness trainings delete {model.training_id}"
            )
    if deleted.render is not None:
        say(f"the render keeps {len(deleted.render.images)} images")
    say(f"{deleted.notice} (backups expire within {deleted.backups_expire_within_days} days)")
    return EXIT_OK


def _delete_photo(args: argparse.Namespace, client: LikenessClient) -> int:
    deleted = client.delete_photo(args.subject_id, args.photo_id, with_models=args.with_models)
    return show_deletion(args, deleted)


def _delete_training(args: argparse.Namespace, client: LikenessClient) -> int:
    return show_deletion(args, client.delete_training(args.training_id))


def _delete_render(args: argparse.Namespace, client: LikenessClient) -> int:
    return show_deletion(args, client.delete_render(args.render_id))


def _reject_image(args: argparse.Namespace, client: LikenessClient) -> int:
    return show_deletion(args, client.reject_image(args.render_id, args.image_id))


def register_photo_delete(api: ApiCommands, photos: Commands) -> None:
    delete = api.command(
        photos, "delete", "delete one photo (every version); names its models", _delete_photo
    )
    delete.add_argument("subject_id", metavar="SUBJECT")
    delete.add_argument("photo_id", metavar="PHOTO")
    delete.add_argument(
        "--with-models", action="store_true", help="delete the models trained on it too (trainings:write)"
    )
    add_json_option(delete, "a summary")


def register_training_delete(api: ApiCommands, trainings: Commands) -> None:
    delete = api.command(
        trainings, "delete", "delete a training and its model (every version)", _delete_training
    )
    delete.add_argument("training_id", metavar="ID")
    add_json_option(delete, "a summary")


def register_render_deletes(api: ApiCommands, renders: Commands) -> None:
    delete = api.command(renders, "delete", "delete a render and every image of it", _delete_render)
    delete.add_argument("render_id", metavar="ID")
    add_json_option(delete, "a summary")
    reject = api.command(renders, "reject", "reject one image: every copy of it is deleted", _reject_image)
    reject.add_argument("render_id", metavar="ID")
    reject.add_argument("image_id", metavar="IMAGE")
    add_json_option(reject, "a summary")


def register_rectify(api: ApiCommands, subjects: Commands) -> None:
    rectify = api.command(
        subjects,
        "rectify",
        "correct the subject's record: your reference for the person (stored only as a keyed hash)",
        prints(lambda client, args: client.rectify_subject(args.subject_id, external_ref=args.external_ref)),
    )
    rectify.add_argument("subject_id", metavar="ID")
    which = rectify.add_mutually_exclusive_group(required=True)
    which.add_argument("--external-ref", help="the corrected reference")
    which.add_argument(
        "--forget-external-ref",
        dest="external_ref",
        action="store_const",
        const=None,
        help="forget the reference",
    )
