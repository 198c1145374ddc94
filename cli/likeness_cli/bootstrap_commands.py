"""`likeness bootstrap`: provisions what the services bind to, and renders who may do what with it.

    likeness bootstrap                      # NATS streams, KV buckets, consumers; the S3 bucket, its
                                            # versioning and policy (idempotent; prints what changed)
    likeness bootstrap nats-config          # nats-server's `authorization { users = [...] }` block
    likeness bootstrap s3-identities        # SeaweedFS identities (`-s3.config`), one per identity
    likeness bootstrap iam-policies         # the same rights as IAM (AWS, MinIO) policies
    likeness bootstrap bucket-policy        # the bucket policy bootstrap sets (versions stay retention's)

Provisioning runs with the `bootstrap` identity's credentials, read as every service reads its own:
`LIKENESS_NATS_URL`, `LIKENESS_NATS_USER` (default `bootstrap`), `LIKENESS_S3_ENDPOINT`,
`LIKENESS_S3_BUCKET`, and the secret files `nats_password`, `s3_access_key`, `s3_secret_key` in
`LIKENESS_SECRETS_DIR`. Everything comes from `likeness.provisioning`, so the chart, the dev stack and an
operator render the same tables. On a JetStream cluster, `LIKENESS_STREAM_REPLICAS=3` keeps every stream and
bucket on three servers (`LIKENESS_NATS_URL` may list them all, comma-separated). The audit stream is only
ever created: its drift is reported, and `--tighten-audit` (with an operator's credentials: the bootstrap
user may not touch it) changes it only where every record it holds stays.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import nats.errors
from minio.error import S3Error
from pydantic import SecretStr, ValidationError, model_validator

from likeness import access_policies
from likeness.config import CommonSettings
from likeness.provisioner import bootstrap
from likeness.provisioning import BOOTSTRAP, DEFAULT_S3_BUCKET, IDENTITIES, Bounds
from likeness_cli.errors import EXIT_FAILED, EXIT_OK, CliError, say


class BootstrapSettings(CommonSettings):
    """The bootstrap Job's settings: NATS and S3 as the `bootstrap` identity; no Vault, no user tokens."""

    nats_user: str = BOOTSTRAP
    #: Byte bounds by stream or bucket name (`LIKENESS_STREAM_MAX_BYTES`, JSON: `{"LIKENESS_EVENTS":
    #: 4294967296}`) and age bounds in seconds by stream name, replacing the spec's (issue 18): JetStream
    #: reserves each byte bound from its storage, so production sizes them to its disk here.
    stream_max_bytes: dict[str, int] = {}
    stream_max_age_seconds: dict[str, float] = {}
    #: Copies of every stream and bucket (`LIKENESS_STREAM_REPLICAS`): 3 on a JetStream cluster of three or
    #: more servers, so losing one loses nothing; 1 (the default) on a single server.
    stream_replicas: int = 1
    # No Vault: the shared production checks then leave Vault alone; S3's are made below.
    uses_storage: ClassVar[bool] = False
    verifies_user_tokens: ClassVar[bool] = False

    def secrets_to_check(self) -> dict[str, SecretStr]:
        return {"s3_secret_key": self.s3_secret_key, "nats_password": self.nats_password}

    @model_validator(mode="after")
    def _s3_over_https_in_production(self) -> BootstrapSettings:
        if self.is_production and urlparse(self.s3_endpoint).scheme != "https":
            raise ValueError("refusing production settings: LIKENESS_S3_ENDPOINT must use https://")
        return self


def _apply(args: argparse.Namespace) -> int:
    try:
        settings = BootstrapSettings()
    except ValidationError as error:
        raise CliError(f"bootstrap settings refused: {error}") from None
    try:
        changes = asyncio.run(
            bootstrap(
                settings,
                nats_side=not args.s3_only,
                s3_side=not args.nats_only,
                tighten_audit=args.tighten_audit,
                audit_max_bytes=args.audit_max_bytes,
                bounds=Bounds(
                    settings.stream_max_bytes, settings.stream_max_age_seconds, settings.stream_replicas
                ),
            )
        )
    except ValueError as error:
        raise CliError(f"bootstrap bounds refused: {error}") from None
    except (OSError, TimeoutError, nats.errors.Error, S3Error) as error:
        raise CliError(f"could not provision: {type(error).__name__}: {error}") from None
    for change in changes:
        print(change.line())
    drift = [change for change in changes if change.action == "drift"]
    if drift:
        say(f"{len(drift)} resource(s) differ from the spec and were left as they are (see 'drift' above)")
        return EXIT_FAILED if args.strict else EXIT_OK
    return EXIT_OK


def _read_secret(directory: Path, identity: str, name: str) -> str:
    path = directory / identity / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise CliError(f"no {name} for {identity}: expected the file {path}") from None


def _nats_config(args: argparse.Namespace) -> int:
    passwords = None
    if args.passwords_dir is not None:
        passwords = {
            spec.name: _read_secret(args.passwords_dir, spec.name, "nats_password") for spec in IDENTITIES
        }
    sys.stdout.write(access_policies.nats_authorization(passwords))
    return EXIT_OK


def _s3_identities(args: argparse.Namespace) -> int:
    credentials: dict[str, tuple[str, str]] = {}
    for spec in IDENTITIES:
        if args.credentials_dir is None:
            credentials[spec.name] = (f"<s3_access_key of {spec.name}>", f"<s3_secret_key of {spec.name}>")
        elif spec.s3 is not None:
            credentials[spec.name] = (
                _read_secret(args.credentials_dir, spec.name, "s3_access_key"),
                _read_secret(args.credentials_dir, spec.name, "s3_secret_key"),
            )
    _print_json(access_policies.seaweedfs_identities(credentials, args.bucket))
    return EXIT_OK


def _iam_policies(args: argparse.Namespace) -> int:
    _print_json(access_policies.iam_policies(args.bucket))
    return EXIT_OK


def _bucket_policy(args: argparse.Namespace) -> int:
    _print_json(access_policies.bucket_policy(args.bucket))
    return EXIT_OK


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "bootstrap",
        help="provision NATS and S3 for the services (idempotent); render the access tables",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    side = parser.add_mutually_exclusive_group()
    side.add_argument("--nats-only", action="store_true", help="provision NATS only")
    side.add_argument("--s3-only", action="store_true", help="provision S3 only")
    parser.add_argument(
        "--tighten-audit",
        action="store_true",
        help="also update the audit stream where that keeps every record (an operator's credentials)",
    )
    parser.add_argument(
        "--audit-max-bytes", type=int, help="the audit stream's byte bound (default: the spec's)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when anything drifted")
    parser.set_defaults(handler=_apply)
    renders = parser.add_subparsers(dest="bootstrap_command", metavar="RENDER")

    nats_config = renders.add_parser("nats-config", help="nats-server's authorization block")
    nats_config.add_argument(
        "--passwords-dir",
        type=Path,
        help="write passwords from DIR/<identity>/nats_password (default: read from the server's "
        "environment, $LIKENESS_NATS_PASSWORD_<IDENTITY>)",
    )
    nats_config.set_defaults(handler=_nats_config)

    bucket_help = f"the bucket (default {DEFAULT_S3_BUCKET})"
    identities = renders.add_parser("s3-identities", help="SeaweedFS identities (-s3.config)")
    identities.add_argument("--bucket", default=DEFAULT_S3_BUCKET, help=bucket_help)
    identities.add_argument(
        "--credentials-dir",
        type=Path,
        help="keys from DIR/<identity>/s3_access_key and s3_secret_key (default: placeholders)",
    )
    identities.set_defaults(handler=_s3_identities)

    iam = renders.add_parser("iam-policies", help="IAM (AWS, MinIO) policies, one per identity")
    iam.add_argument("--bucket", default=DEFAULT_S3_BUCKET, help=bucket_help)
    iam.set_defaults(handler=_iam_policies)

    policy = renders.add_parser("bucket-policy", help="the bucket policy bootstrap sets")
    policy.add_argument("--bucket", default=DEFAULT_S3_BUCKET, help=bucket_help)
    policy.set_defaults(handler=_bucket_policy)
