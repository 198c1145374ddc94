"""`likeness consents ...`: a subject's consent grants and the tenant's consent policy, through the gateway.

    likeness consents grant SUBJECT --purpose headshots|team_look|instant --policy-version V
                            [--expires-at 2027-01-01T00:00:00Z]
    likeness consents list SUBJECT [--json]
    likeness consents withdraw SUBJECT --purpose P     # cancels that purpose's queued and running jobs
    likeness consents policy get
    likeness consents policy set [--grants-need-subject-token] [--erase-on-withdrawal]

`policy set` replaces the whole policy, as the API's PUT does: an option left out is off.
"""

from __future__ import annotations

import argparse
from datetime import datetime

from likeness_cli.api_cli import ApiCommands, add_json_option, print_json, prints, table, when
from likeness_cli.errors import EXIT_OK, say
from likeness_client import PURPOSES, ConsentPolicy, LikenessClient


def _grant(args: argparse.Namespace, client: LikenessClient) -> int:
    grant = client.grant_consent(args.subject_id, args.purpose, args.policy_version, args.expires_at)
    print_json(grant)
    return EXIT_OK


def _list(args: argparse.Namespace, client: LikenessClient) -> int:
    grants = client.list_consents(args.subject_id)
    if args.json:
        print_json(grants)
        return EXIT_OK
    rows = [
        [g.id, g.purpose, g.policy_version, g.granted_by, when(g.granted_at), "live" if g.live else "-"]
        for g in grants
    ]
    print(table(rows, ["GRANT", "PURPOSE", "POLICY", "BY", "GRANTED", "LIVE"]))
    return EXIT_OK


def _withdraw(args: argparse.Namespace, client: LikenessClient) -> int:
    withdrawal = client.withdraw_consent(args.subject_id, args.purpose)
    print_json(withdrawal)
    if not withdrawal.withdrawn:
        say(f"no live {args.purpose} grant: nothing withdrawn")
    if withdrawal.erasure_id:
        say(f"the tenant's policy started the erasure: likeness erasures get {withdrawal.erasure_id}")
    return EXIT_OK


def _set_policy(args: argparse.Namespace, client: LikenessClient) -> int:
    policy = ConsentPolicy(
        grants_need_subject_token=args.grants_need_subject_token, erase_on_withdrawal=args.erase_on_withdrawal
    )
    print_json(client.set_consent_policy(policy))
    return EXIT_OK


def register(api: ApiCommands) -> None:
    consents = api.group("consents", "a subject's consent grants, and the tenant's consent policy")
    grant = api.command(consents, "grant", "grant consent for one purpose; prints the grant", _grant)
    grant.add_argument("subject_id", metavar="SUBJECT")
    grant.add_argument("--purpose", required=True, choices=PURPOSES)
    grant.add_argument("--policy-version", required=True, help="the version of the text the person agreed to")
    grant.add_argument(
        "--expires-at", type=datetime.fromisoformat, help="when the grant lapses (ISO 8601; default: never)"
    )
    listing = api.command(consents, "list", "every grant of a subject, oldest first", _list)
    listing.add_argument("subject_id", metavar="SUBJECT")
    add_json_option(listing)
    withdraw = api.command(
        consents, "withdraw", "withdraw a purpose: its queued and running jobs are cancelled", _withdraw
    )
    withdraw.add_argument("subject_id", metavar="SUBJECT")
    withdraw.add_argument("--purpose", required=True, choices=PURPOSES)

    policy = api.group("policy", "the tenant's consent policy", where=consents)
    api.command(
        policy, "get", "print the tenant's consent policy", prints(lambda c, _: c.get_consent_policy())
    )
    put = api.command(policy, "set", "replace the tenant's consent policy; prints it", _set_policy)
    put.add_argument(
        "--grants-need-subject-token",
        action="store_true",
        help="take grants only from the person's own token (not the tenant's back end)",
    )
    put.add_argument(
        "--erase-on-withdrawal",
        action="store_true",
        help="a withdrawal that leaves no live grant starts the subject's erasure",
    )
