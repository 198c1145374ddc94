"""`likeness receipt ...` and `likeness retention ...`: erasure receipts and retention policies.

    likeness receipt verify FILE [--keys FILE | --keys-url URL]   # exit 0 valid, 1 not valid
    likeness receipt keys                                          # the public keys (JWK set) to publish
    likeness receipt keygen --jwks-out FILE                        # a new signing key for production
    likeness retention policy --tenant T [--photos-days N ...]     # the tenant's policy in words (or set it)

Keys for `verify` come from `--keys` (a JWK set, one JWK or a bare base64 key, as published),
`--keys-url` (a URL serving the JWK set) or, without either, from the configured signing key
(`LIKENESS_RECEIPT_SIGNING_KEY`, else the local dev stack's, derived from its HMAC secret in dev.env).
`retention policy` talks to the dev stack's (or `LIKENESS_NATS_URL`'s) NATS with retention's own code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from likeness import receipts
from likeness_cli.local_settings import find_project_dir, read_dev_env, state_dir_of

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2


def _say(message: str) -> None:
    print(f"likeness: {message}", file=sys.stderr, flush=True)


def _environment(args: argparse.Namespace) -> dict[str, str]:
    """LIKENESS_* settings: the local dev stack's dev.env, overridden by the environment."""
    project: Path = args.project_dir.resolve() if args.project_dir else find_project_dir()
    return read_dev_env(state_dir_of(project)) | {
        k: v for k, v in os.environ.items() if k.startswith("LIKENESS_")
    }


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
    public = _configured_private_key(_environment(args)).public_key()
    return {receipts.key_id(public): public}


def _verify(args: argparse.Namespace) -> int:
    import httpx

    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    try:
        keys = _public_keys(args)
    except (receipts.ReceiptError, httpx.HTTPError, OSError) as error:
        _say(f"error: cannot load the published keys: {error}")
        return EXIT_USAGE
    try:
        facts = receipts.verify_receipt_text(text, keys)
    except receipts.ReceiptError as error:
        print(f"NOT VALID: {error}")
        return EXIT_INVALID
    print("VALID: signed by the published key, nothing altered")
    print(receipts.describe(facts))
    return EXIT_OK


def _keys(args: argparse.Namespace) -> int:
    env = _environment(args)
    try:
        publics = [_configured_private_key(env).public_key()]
    except receipts.ReceiptError:
        _say("error: no signing key configured (LIKENESS_RECEIPT_SIGNING_KEY) and no dev stack here")
        return EXIT_USAGE
    for previous in json.loads(env.get("LIKENESS_RECEIPT_PREVIOUS_PUBLIC_KEYS", "[]")):
        publics.extend(receipts.load_public_keys(str(previous)).values())
    print(json.dumps(receipts.jwks(publics), indent=2))
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    secret = receipts.new_private_key_text()
    public = receipts.private_key_from_text(secret).public_key()
    Path(args.jwks_out).write_text(json.dumps(receipts.jwks([public]), indent=2) + "\n")
    _say(f"public keys written to {args.jwks_out}: publish them; keep the line below in your secret store")
    print(f"LIKENESS_RECEIPT_SIGNING_KEY={secret}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------- policy

_DAY_OPTIONS = ("photos_days", "models_days", "renders_days", "inactivity_days")


def _policy(args: argparse.Namespace) -> int:
    from likeness.ids import is_valid_tenant

    if not is_valid_tenant(args.tenant):
        _say(f"error: {args.tenant!r} is not a tenant id")
        return EXIT_USAGE
    changes = {name: getattr(args, name) for name in _DAY_OPTIONS if getattr(args, name) is not None}
    if args.photos_after_training is not None:
        changes["photos_deleted_after_training"] = args.photos_after_training
    return asyncio.run(_policy_async(args.tenant, changes, _environment(args)))


async def _policy_async(tenant: str, changes: dict[str, Any], env: dict[str, str]) -> int:
    from likeness.audit import AuditTrail
    from likeness.bus import Bus
    from likeness.v1 import retention_pb2
    from retention.config import RetentionSettings
    from retention.records import TENANTS_BUCKET
    from retention.schedule import describe_policy
    from retention.tenants import TenantPolicies

    values = {key.removeprefix("LIKENESS_").lower(): value for key, value in env.items()}
    settings = RetentionSettings.model_validate(values)
    bus = await Bus.connect(settings.nats_url, "likeness-cli")
    try:
        await bus.ensure_streams()  # the audit stream, on a stack that has not started its services
        policies = TenantPolicies(await bus.kv(f"{settings.kv_bucket_prefix}{TENANTS_BUCKET}"), settings)
        if changes:
            chosen = await policies.chosen(tenant) or retention_pb2.RetentionSchedule()
            for name, value in changes.items():
                setattr(chosen, name, value)
            await policies.set(tenant, chosen)
            audit = AuditTrail(bus, settings.hmac_secret.get_secret_value(), actor="cli")
            await audit.record(tenant, "policy.changed", "", "ok")
            _say("schedule saved; it applies to subjects opened from now on")
        schedule, tenant_specific = await policies.effective(tenant)
    finally:
        await bus.close()
    print(describe_policy(tenant, schedule, settings, tenant_specific=tenant_specific))
    return EXIT_OK


# --------------------------------------------------------------------------------------------- parser


def register(commands: Any) -> None:
    """Adds `receipt` and `retention` to the `likeness` command's subparsers."""
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
    verify.set_defaults(handler=_verify)

    keys = receipt.add_parser("keys", parents=[where], help="print the public keys (JWK set) to publish")
    keys.set_defaults(handler=_keys)

    keygen = receipt.add_parser("keygen", help="make a new receipt signing key (for production)")
    keygen.add_argument("--jwks-out", required=True, help="file to write the public JWK set to")
    keygen.set_defaults(handler=_keygen)

    retention = commands.add_parser("retention", help="retention policies").add_subparsers(
        dest="retention_command", metavar="SUBCOMMAND", required=True
    )
    policy = retention.add_parser(
        "policy", parents=[where], help="print a tenant's retention policy in words (or change it)"
    )
    policy.add_argument("--tenant", required=True)
    for name in _DAY_OPTIONS:
        policy.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, help="set (0: the default)")
    after = policy.add_mutually_exclusive_group()
    after.add_argument(
        "--photos-after-training",
        dest="photos_after_training",
        action="store_true",
        default=None,
        help="set: photos are deleted as soon as a training succeeds",
    )
    after.add_argument("--no-photos-after-training", dest="photos_after_training", action="store_false")
    policy.set_defaults(handler=_policy)
