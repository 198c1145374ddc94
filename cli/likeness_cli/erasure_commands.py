"""`likeness erasures ...`: follow an erasure, and fetch its signed receipt checked against the gateway's
published keys.

    likeness erasures get ERASURE                 # the record: status, what was deleted, backups horizon
    likeness erasures receipt ERASURE [--out FILE] [--subject ID --salt SALT]
                                                  # the signed receipt, verified; exit 1 if not valid
    likeness erasures keys                        # the published JWK set (public: no token needed)

A receipt can be checked again later, offline: `likeness receipt verify FILE --keys KEYS.json`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from likeness import receipts
from likeness_cli.api_cli import ApiCommands, prints
from likeness_cli.errors import EXIT_FAILED, say
from likeness_cli.receipts import add_subject_options, subject_check
from likeness_client import LikenessClient


def _receipt(args: argparse.Namespace, client: LikenessClient) -> int:
    document = client.get_erasure_receipt(args.erasure_id).model_dump(mode="json")
    published = client.get_receipt_keys().model_dump(mode="json")
    try:
        facts = receipts.verify_receipt(document, receipts.load_public_keys(json.dumps(published)))
    except receipts.ReceiptError as error:
        say(f"NOT VALID: {error}")
        return EXIT_FAILED
    text = json.dumps(document, indent=2) + "\n"
    out: Path | None = args.out
    if out is None:
        print(text, end="")
    else:
        out.write_text(text)
        say(f"receipt written to {out}")
    say("VALID: signed by a key the gateway publishes, nothing altered")
    say(receipts.describe(facts))
    return subject_check(facts, args.subject, args.salt, say)


def register(api: ApiCommands) -> None:
    erasures = api.group("erasures", "erasures of subjects and their signed receipts")
    read_erasure = prints(lambda client, args: client.get_erasure(args.erasure_id))
    get = api.command(erasures, "get", "print an erasure's record (status, what was deleted)", read_erasure)
    get.add_argument("erasure_id", metavar="ERASURE")
    receipt = api.command(
        erasures, "receipt", "fetch a completed erasure's signed receipt and verify it", _receipt
    )
    receipt.add_argument("erasure_id", metavar="ERASURE")
    receipt.add_argument("--out", type=Path, help="write the receipt here (default: standard output)")
    add_subject_options(receipt)
    read_keys = prints(lambda client, args: client.get_receipt_keys())
    api.command(erasures, "keys", "print the published keys that verify receipts", read_keys, public=True)
