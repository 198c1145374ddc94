"""`likeness subjects log ID` and `likeness audit trail`: who touched a person's data, and the tenant's trail.

likeness subjects log ID [--limit N] [--cursor C | --all] [--json]   # the person's own token only
likeness audit trail [--limit N] [--cursor C | --all] [--json]       # a tenant-wide token with audit:read
"""

from __future__ import annotations

import argparse

from likeness_cli.api_cli import ApiCommands, Commands, add_listing_options, show_listing, when
from likeness_client import AuditEntry, LikenessClient

LOG_COLUMNS = ["WHEN", "ACTION", "PRINCIPAL", "PURPOSE", "OUTCOME", "RESOURCE", "NOTICE"]


def _row(entry: AuditEntry) -> list[str]:
    return [
        when(entry.at),
        entry.action,
        entry.principal,
        entry.purpose or "-",
        entry.outcome,
        entry.resource_id or "-",
        entry.notice or "",
    ]


def _trail_row(entry: AuditEntry) -> list[str]:
    return [*_row(entry), (entry.subject_pseudonym or "-")[:12]]


def _log(args: argparse.Namespace, client: LikenessClient) -> int:
    return show_listing(
        args, client.list_processing_log, client.iter_processing_log, [args.subject_id], LOG_COLUMNS, _row
    )


def _trail(args: argparse.Namespace, client: LikenessClient) -> int:
    columns = [*LOG_COLUMNS, "PERSON (PSEUDONYM)"]
    return show_listing(args, client.list_audit_trail, client.iter_audit_trail, [], columns, _trail_row)


def register_subject_log(api: ApiCommands, subjects: Commands) -> None:
    log = api.command(
        subjects, "log", "the subject's processing log: every access to their data (their own token)", _log
    )
    log.add_argument("subject_id", metavar="ID")
    add_listing_options(log)


def register(api: ApiCommands) -> None:
    audit = api.group("audit", "the tenant's audit trail")
    add_listing_options(
        api.command(audit, "trail", "every audit record of the tenant, oldest first (audit:read)", _trail)
    )
