"""`likeness receipt ...`: erasure receipts, checked offline, and the keys that sign them.

    likeness receipt verify FILE [--keys FILE | --keys-url URL] [--subject ID --salt SALT]
                                                                   # exit 0 valid, 1 not valid
    likeness receipt keys                                          # the public keys (JWK set) to publish
    likeness receipt keygen --jwks-out FILE                        # a new signing key for production

Keys for `verify` come from `--keys` (a JWK set, one JWK or a bare base64 key, as published),
`--keys-url` (a URL serving the JWK set, e.g. the gateway's `/v1/receipt-keys`) or, without either, from
the configured signing key (`LIKENESS_RECEIPT_SIGNING_KEY`, else the local dev stack's, derived from its
HMAC secret in dev.env). To fetch a receipt and check it against the gateway's published keys in one
go: `likeness erasures receipt ERASURE`.

With `--subject ID --salt SALT` (the salt the erasure request answered with, once) it also checks that the
receipt names that subject: the receipt holds only a salted hash of the subject id, never the id itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from likeness import receipts
from likeness_cli.errors import EXIT_FAILED as EXIT_INVALID
from likeness_cli.errors import EXIT_OK, EXIT_USAGE, say
from likeness_cli.local_settings import local_environment


def _configured_private_key(env: dict[str, str]) -> Ed25519PrivateKey:
    configured = env.get("LIKENESS_RECEIPT_SIGNING_KEY", "").strip()
    if configured:
        return receipts.private_key_from_text(configured)
    secret = env.get("LIKENESS_HMAC_SECRET", "")
    if not secret:
        raise receipts.ReceiptError(
            "no keys given: pass --keys FILE or --keys-url URL (the published key), or run a dev stack"
        )
    return receipts.development_key(secret)


def _public_keys(args: argparse.Namespace) -> dict[str, Ed25519PublicKey]:
    if args.keys is not None:
        return receipts.load_public_keys(Path(args.keys).read_text())
    if args.keys_url is not None:
        import httpx

        response = httpx.get(args.keys_url, timeout=10, follow_redirects=True)
        response.raise_for_status()
        return receipts.load_public_keys(response.text)
    public = _configured_private_key(local_environment(args.project_dir)).public_key()
    return {receipts.key_id(public): public}


def _verify(args: argparse.Namespace) -> int:
    import httpx

    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    try:
        keys = _public_keys(args)
    except (receipts.ReceiptError, httpx.HTTPError, OSError) as error:
        say(f"error: cannot load the published keys: {error}")
        return EXIT_USAGE
    try:
        facts = receipts.verify_receipt_text(text, keys)
    except receipts.ReceiptError as error:
        print(f"NOT VALID: {error}")
        return EXIT_INVALID
    print("VALID: signed by the published key, nothing altered")
    print(receipts.describe(facts))
    return subject_check(facts, args.subject, args.salt, print)


def subject_check(
    facts: dict[str, Any], subject: str | None, salt: str | None, show: Callable[[str], None]
) -> int:
    """With a subject and its salt: whether the verified receipt names that subject (exit status)."""
    if subject is None and salt is None:
        return EXIT_OK
    if not subject or not salt:
        say("error: --subject and --salt go together")
        return EXIT_USAGE
    if receipts.names_subject(facts, subject, salt):
        show(f"NAMES {subject}: the receipt's subject commitment matches this subject and salt")
        return EXIT_OK
    show(f"DOES NOT NAME {subject}: the commitment does not match (another subject, or another salt)")
    return EXIT_INVALID


def add_subject_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subject", metavar="ID", help="check that the receipt names this subject")
    parser.add_argument("--salt", help="the receipt salt the erasure request answered with (given once)")


def _keys(args: argparse.Namespace) -> int:
    env = local_environment(args.project_dir)
    try:
        publics = [_configured_private_key(env).public_key()]
    except receipts.ReceiptError:
        say("error: no signing key configured (LIKENESS_RECEIPT_SIGNING_KEY) and no dev stack here")
        return EXIT_USAGE
    for previous in json.loads(env.get("LIKENESS_RECEIPT_PREVIOUS_PUBLIC_KEYS", "[]")):
        publics.extend(receipts.load_public_keys(str(previous)).values())
    print(json.dumps(receipts.jwks(publics), indent=2))
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    secret = receipts.new_private_key_text()
    public = receipts.private_key_from_text(secret).public_key()
    Path(args.jwks_out).write_text(json.dumps(receipts.jwks([public]), indent=2) + "\n")
    say(f"public keys written to {args.jwks_out}: publish them; keep the line below in your secret store")
    print(f"LIKENESS_RECEIPT_SIGNING_KEY={secret}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------- parser


def register(commands: Any) -> None:
    """Adds `receipt` to the `likeness` command's subparsers."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--project-dir", type=Path, help="project whose .likeness/dev.env to read (default: here)"
    )

    receipt = commands.add_parser("receipt", help="erasure receipts").add_subparsers(
        dest="receipt_command", metavar="SUBCOMMAND", required=True
    )
    verify = receipt.add_parser(
        "verify", parents=[where], help="check an erasure receipt's signature against the published key"
    )
    verify.add_argument("file", help="the receipt (JSON), or - for standard input")
    source = verify.add_mutually_exclusive_group()
    source.add_argument("--keys", help="the published public keys: a JWK set, one JWK or a base64 key")
    source.add_argument("--keys-url", help="a URL serving the published JWK set")
    add_subject_options(verify)
    verify.set_defaults(handler=_verify)

    keys = receipt.add_parser("keys", parents=[where], help="print the public keys (JWK set) to publish")
    keys.set_defaults(handler=_keys)

    keygen = receipt.add_parser("keygen", help="make a new receipt signing key (for production)")
    keygen.add_argument("--jwks-out", required=True, help="file to write the public JWK set to")
    keygen.set_defaults(handler=_keygen)
