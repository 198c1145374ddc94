"""`likeness team-looks ...` and `likeness retention policy ...`: what a tenant sets for all its subjects,
through the gateway (a tenant's token; an end user's token is refused).

    likeness team-looks list [--json]
    likeness team-looks get LOOK
    likeness team-looks set LOOK --name N --style S --background B [--seed-policy fixed|per_render] [--seed N]
                            [--outfit O] [--lighting L]
    likeness team-looks delete LOOK
    likeness retention policy get [--json]        # the tenant's schedule in words
    likeness retention policy set [--photos-days N] [--photos-after-training | --no-photos-after-training]
                                  [--models-days N] [--renders-days N] [--inactivity-days N] [--json]

`retention policy set` replaces the whole schedule, as the API's PUT does: a period left out is 0, the
service default. The new schedule applies to subjects opened from then on.
"""

from __future__ import annotations

import argparse

from likeness_cli.api_cli import ApiCommands, add_json_option, print_json, prints, table
from likeness_cli.errors import EXIT_OK, say
from likeness_client import LikenessClient, Retention, RetentionPolicy, TeamLook, TeamLookSpec

SEED_POLICIES = ("fixed", "per_render")
_DAY_OPTIONS = ("photos_days", "models_days", "renders_days", "inactivity_days")

# ------------------------------------------------------------------------------------------------ looks


def _seeds(look: TeamLook) -> str:
    return f"fixed {look.seed}" if look.seed_policy == "fixed" else look.seed_policy.replace("_", " ")


def _list_looks(args: argparse.Namespace, client: LikenessClient) -> int:
    looks = client.list_team_looks()
    if args.json:
        print_json(looks)
        return EXIT_OK
    rows = [[look.id, look.name, look.style, look.background, _seeds(look)] for look in looks]
    print(table(rows, ["LOOK", "NAME", "STYLE", "BACKGROUND", "SEEDS"]))
    return EXIT_OK


def _set_look(args: argparse.Namespace, client: LikenessClient) -> int:
    # The options are named after the spec's fields.
    spec = TeamLookSpec.model_validate({field: getattr(args, field) for field in TeamLookSpec.model_fields})
    look = client.put_team_look(args.look_id, spec)
    print_json(look)
    say(f"team look {look.id} saved: renders with --team-look {look.id} get its style and background")
    return EXIT_OK


def _delete_look(args: argparse.Namespace, client: LikenessClient) -> int:
    client.delete_team_look(args.look_id)
    say(f"team look {args.look_id} deleted (renders made with it keep it on record)")
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ policy


def _show_policy(args: argparse.Namespace, policy: RetentionPolicy) -> None:
    if args.json:
        print_json(policy)
    else:
        print(policy.text)


def _get_policy(args: argparse.Namespace, client: LikenessClient) -> int:
    _show_policy(args, client.get_retention_policy())
    return EXIT_OK


def _set_policy(args: argparse.Namespace, client: LikenessClient) -> int:
    days = {name: getattr(args, name) or 0 for name in _DAY_OPTIONS}
    schedule = Retention(photos_deleted_after_training=bool(args.photos_after_training), **days)
    policy = client.set_retention_policy(schedule)
    say("schedule saved; it applies to subjects opened from now on")
    _show_policy(args, policy)
    return EXIT_OK


# ------------------------------------------------------------------------------------------------ parser


def register(api: ApiCommands) -> None:
    looks = api.group("team-looks", "a tenant's team looks: a pinned style, background and seeds")
    add_json_option(api.command(looks, "list", "the tenant's team looks", _list_looks))
    get = api.command(
        looks, "get", "print a team look", prints(lambda client, args: client.get_team_look(args.look_id))
    )
    get.add_argument("look_id", metavar="LOOK")
    put = api.command(looks, "set", "create or replace a team look (tenant token); prints it", _set_look)
    put.add_argument("look_id", metavar="LOOK", help="the tenant's own id, e.g. sales-emea")
    put.add_argument("--name", required=True, help="a name people read")
    put.add_argument("--style", required=True, help="a style id (likeness styles list)")
    put.add_argument("--background", required=True, help="a background id (likeness styles list)")
    put.add_argument(
        "--seed-policy", choices=SEED_POLICIES, default="fixed", help="fixed: one seed for every render"
    )
    put.add_argument("--seed", type=int, help="the fixed seed (default: the gateway picks one)")
    put.add_argument("--outfit", help="an outfit id every member gets (default: each render chooses)")
    put.add_argument("--lighting", help="a lighting id every member gets (default: each render chooses)")
    delete = api.command(looks, "delete", "delete a team look (tenant token)", _delete_look)
    delete.add_argument("look_id", metavar="LOOK")

    retention = api.group("retention", "the tenant's retention policy")
    policy = api.group("policy", "the schedule subjects opened from now on get", where=retention)
    get_policy = api.command(policy, "get", "print the tenant's retention policy in words", _get_policy)
    add_json_option(get_policy, "words")
    put_policy = api.command(
        policy,
        "set",
        "replace the tenant's schedule (a period left out: the service default); prints it in words",
        _set_policy,
    )
    for name in _DAY_OPTIONS:
        put_policy.add_argument(
            f"--{name.replace('_', '-')}", dest=name, type=int, metavar="DAYS", help="0: the default"
        )
    after = put_policy.add_mutually_exclusive_group()
    after.add_argument(
        "--photos-after-training",
        dest="photos_after_training",
        action="store_true",
        default=False,
        help="photos are deleted as soon as a training succeeds",
    )
    after.add_argument("--no-photos-after-training", dest="photos_after_training", action="store_false")
    add_json_option(put_policy, "words")
