"""Each identity's rights, derived from `likeness.provisioning` and rendered for the servers that enforce
them: nats-server's `authorization` block, SeaweedFS's identities (`-s3.config`), the bucket policy that
keeps object versions for retention to delete, and the equivalent IAM (AWS, MinIO) policies.

NATS: an identity may publish only the JetStream API subjects of its own buckets, consumers and streams
(`$JS.API.STREAM.INFO.KV_<bucket>`, `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`,
`$JS.ACK.<stream>.<consumer>.>`, ...) and the NATS subjects it announces, and subscribe only to its own
reply inbox (`_INBOX.<identity>.>`), the deliver subjects of its push consumers and its plain feeds.
What no service may ever do is also denied outright, so a widened allow-list cannot grant it: touching
the audit stream's records or configuration, and (everyone but retention) announcing `subject.erased`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from likeness.provisioning import (
    AUDIT_STREAM,
    BUCKETS,
    CONSUMERS,
    IDENTITIES,
    RETENTION,
    RETIRED_CONSUMERS,
    STREAMS,
    SUBJECT_ERASED,
    SUBJECT_KEYED_BUCKETS,
    BucketSpec,
    Identity,
    S3Access,
    bucket,
    consumer,
    inbox_prefix,
    tenant_queues,
)

API = "$JS.API"

#: Denied to every identity, provisioning included: the audit trail's records and bounds are never
#: changed through the API (nats-server also refuses purge and delete by the stream's own flags).
AUDIT_DENIED = (
    f"{API}.STREAM.PURGE.{AUDIT_STREAM}",
    f"{API}.STREAM.DELETE.{AUDIT_STREAM}",
    f"{API}.STREAM.MSG.DELETE.{AUDIT_STREAM}",
    f"{API}.STREAM.UPDATE.{AUDIT_STREAM}",
)


@dataclass(frozen=True)
class NatsPermissions:
    publish_allow: tuple[str, ...]
    publish_deny: tuple[str, ...]
    subscribe_allow: tuple[str, ...]

    def as_config(self) -> dict[str, Any]:
        return {
            "publish": {"allow": list(self.publish_allow), "deny": list(self.publish_deny)},
            "subscribe": {"allow": list(self.subscribe_allow)},
        }


def _bucket_subjects(spec: BucketSpec, watch: bool) -> list[str]:
    kv_stream = spec.stream_name
    subjects = [
        f"$KV.{spec.name}.>",  # put, create, update, delete, purge
        f"{API}.STREAM.INFO.{kv_stream}",  # binding, and listing keys (`likeness.bus.kv_keys`)
        f"{API}.STREAM.MSG.GET.{kv_stream}",  # get
    ]
    if spec.allow_direct:
        # Batched reads of a stretch of the stream (`likeness.creation_order`); and nats-py's get by key,
        # which is a direct get by subject on such a stream.
        subjects += [f"{API}.DIRECT.GET.{kv_stream}", f"{API}.DIRECT.GET.{kv_stream}.>"]
    if spec.name in SUBJECT_KEYED_BUCKETS:
        # Forgetting keys without a marker that names the subject (`likeness.bus.kv_forget`), on erasure.
        subjects.append(f"{API}.STREAM.PURGE.{kv_stream}")
    if watch:  # nats-py's ordered consumer: created unnamed, read, flow-controlled, removed
        subjects += [
            f"{API}.CONSUMER.CREATE.{kv_stream}",
            f"{API}.CONSUMER.INFO.{kv_stream}.*",
            f"{API}.CONSUMER.DELETE.{kv_stream}.*",
            f"$JS.FC.{kv_stream}.>",
        ]
    return subjects


def nats_permissions(spec: Identity) -> NatsPermissions:
    """The publish/subscribe allow-lists (and the denials every identity gets) of one identity."""
    access = spec.nats
    publish: list[str] = [*access.publish, *access.broadcast]
    subscribe: list[str] = [f"{inbox_prefix(spec.name)}.>", *access.subscribe, *access.broadcast]
    for name in access.kv:
        publish += _bucket_subjects(bucket(name), watch=name in access.kv_watch)
    for name in access.kv_read:
        # Get by key only: no put, no watch, no listing beyond the stream's info needed to bind it.
        kv_stream = bucket(name).stream_name
        publish += [f"{API}.STREAM.INFO.{kv_stream}", f"{API}.STREAM.MSG.GET.{kv_stream}"]
    for name, key_pattern in access.kv_put:
        # Puts on its own keys only (the pattern is in the subject), and the stream's info to bind the
        # bucket: no get, no other key.
        found_bucket = bucket(name)
        publish += [f"$KV.{name}.{key_pattern}", f"{API}.STREAM.INFO.{found_bucket.stream_name}"]
    for name in access.consumers:
        found = consumer(name)
        publish += [f"{API}.CONSUMER.INFO.{found.stream}.{name}", f"$JS.ACK.{found.stream}.{name}.>"]
        if found.pull:
            publish += [f"{API}.STREAM.INFO.{found.stream}", f"{API}.CONSUMER.MSG.NEXT.{found.stream}.{name}"]
        elif found.deliver_subject is not None:
            subscribe.append(found.deliver_subject)
    for stream_name in access.schedules:
        # The filter is part of the subject (nats-server checks it against the request): the serve role may
        # create a consumer of its own stream over its own jobs' subjects, and nothing else (no delete).
        pattern = tenant_queues(stream_name).create_filter_pattern
        publish.append(f"{API}.CONSUMER.CREATE.{stream_name}.*.{pattern}")
    for stream_name in access.works:
        # Every tenant's consumer of the stream: listed (who has work), fetched from, acknowledged.
        publish += [
            f"{API}.STREAM.INFO.{stream_name}",
            f"{API}.CONSUMER.LIST.{stream_name}",
            f"{API}.CONSUMER.INFO.{stream_name}.*",
            f"{API}.CONSUMER.MSG.NEXT.{stream_name}.*",
            f"$JS.ACK.{stream_name}.*.>",
        ]
    for stream_name in access.queue_lag_of:
        publish += [
            f"{API}.STREAM.INFO.{stream_name}",
            f"{API}.STREAM.MSG.GET.{stream_name}",
            f"{API}.CONSUMER.LIST.{stream_name}",
        ]
    for name in access.lag_of:
        found = consumer(name)
        publish += [
            f"{API}.STREAM.INFO.{found.stream}",
            f"{API}.STREAM.MSG.GET.{found.stream}",
            f"{API}.CONSUMER.INFO.{found.stream}.{name}",
        ]
    for stream_name, filter_subject in access.ephemeral:
        # Named, so that the filter is in the subject: `<stream>.<name>.<filter>`.
        publish.append(f"{API}.CONSUMER.CREATE.{stream_name}.*.{filter_subject}")
    for stream_name in access.stream_reads:
        publish += [f"{API}.STREAM.INFO.{stream_name}", f"{API}.STREAM.MSG.GET.{stream_name}"]
    for stream_name in access.stream_purges:
        publish += [f"{API}.STREAM.INFO.{stream_name}", f"{API}.STREAM.PURGE.{stream_name}"]
    for stream_name in access.stream_deletes:
        publish += [
            f"{API}.STREAM.INFO.{stream_name}",
            f"{API}.STREAM.MSG.GET.{stream_name}",
            f"{API}.STREAM.MSG.DELETE.{stream_name}",
        ]
    if access.provisions:
        # Only the streams, buckets and consumers of the spec, each consumer with its own filter: the
        # provisioner can make what the spec names and nothing else (no consumer of its own choosing,
        # so no way to read a stream's records through one).
        provisioned = [config.name for config in STREAMS if config.name]
        provisioned += [found_bucket.stream_name for found_bucket in BUCKETS]
        publish.append(f"{API}.INFO")
        for provisioned_stream in provisioned:
            publish += [
                f"{API}.STREAM.CREATE.{provisioned_stream}",
                f"{API}.STREAM.UPDATE.{provisioned_stream}",
                f"{API}.STREAM.INFO.{provisioned_stream}",
            ]
        for found in CONSUMERS:
            publish += [
                f"{API}.CONSUMER.CREATE.{found.stream}.{found.name}.{found.filter_subject}",
                f"{API}.CONSUMER.INFO.{found.stream}.{found.name}",
            ]
        for stream_name, retired in RETIRED_CONSUMERS:
            publish += [
                f"{API}.CONSUMER.INFO.{stream_name}.{retired}",
                f"{API}.CONSUMER.DELETE.{stream_name}.{retired}",
            ]
    deny = list(AUDIT_DENIED)
    if spec.name != RETENTION:
        deny.append(SUBJECT_ERASED)
    return NatsPermissions(_unique(publish), _unique(deny), _unique(subscribe))


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# ------------------------------------------------------------------------------------------ NATS


def password_variable(identity: str) -> str:
    """The environment variable a rendered nats-server config reads an identity's password from."""
    return "LIKENESS_NATS_PASSWORD_" + identity.upper().replace("-", "_")


def nats_authorization(
    passwords: Mapping[str, str] | None = None,
    identities: Iterable[Identity] = IDENTITIES,
    extra_users: Iterable[Mapping[str, Any]] = (),
) -> str:
    """nats-server's `authorization { users = [...] }` block for the identities.

    With `passwords` (identity -> password, or a bcrypt hash) the values are written in; without, each
    password is read from the server's environment (`$LIKENESS_NATS_PASSWORD_<IDENTITY>`), so the
    rendered file holds no secret. `extra_users` are added as given (the dev stack's unrestricted admin).
    """
    entries = []
    for spec in identities:
        if passwords is not None:
            password = json.dumps(passwords[spec.name])
        else:
            password = "$" + password_variable(spec.name)
        permissions = json.dumps(nats_permissions(spec).as_config(), indent=2).replace("\n", "\n    ")
        entries.append(
            f"  # {spec.name}: {spec.about}\n"
            f"  {{\n    user: {json.dumps(spec.name)}\n    password: {password}\n"
            f"    permissions: {permissions}\n  }}"
        )
    entries += [f"  {json.dumps(dict(user))}" for user in extra_users]
    return "authorization {\n users = [\n" + ",\n".join(entries) + "\n ]\n}\n"


# -------------------------------------------------------------------------------------------- S3

#: SeaweedFS and AWS both name a user this way in a bucket policy's Principal (SeaweedFS's static
#: identities live in account 000000000000).
SEAWEEDFS_ACCOUNT = "000000000000"


def seaweedfs_actions(access: S3Access, bucket_name: str) -> list[str]:
    """SeaweedFS identity actions (`Read:<bucket>/<pattern>`...). Its `Write` also covers deleting (and
    deleting versions): the bucket policy narrows the latter (`bucket_policy`)."""
    if access.configure_bucket:
        return [f"Admin:{bucket_name}"]
    actions = [f"Read:{bucket_name}/{pattern}" for pattern in access.read]
    writes = _unique([*access.write, *access.delete, *access.delete_versions])
    actions += [f"Write:{bucket_name}/{pattern}" for pattern in writes]
    actions += [f"List:{bucket_name}/{pattern}" for pattern in access.list]
    return actions


def seaweedfs_identities(
    credentials: Mapping[str, tuple[str, str]],
    bucket_name: str,
    identities: Iterable[Identity] = IDENTITIES,
    extra: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The `-s3.config` document: one identity per S3 identity of ours, credentials (access key, secret
    key) from `credentials`, plus `extra` entries as given."""
    entries: list[dict[str, Any]] = []
    for spec in identities:
        if spec.s3 is None:
            continue
        access_key, secret_key = credentials[spec.name]
        entries.append(
            {
                "name": spec.name,
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": seaweedfs_actions(spec.s3, bucket_name),
            }
        )
    return {"identities": entries + [dict(entry) for entry in extra]}


def _object_arns(bucket_name: str, patterns: Iterable[str]) -> list[str]:
    return [f"arn:aws:s3:::{bucket_name}/{pattern}" for pattern in patterns]


def bucket_policy(bucket_name: str, identities: Iterable[Identity] = IDENTITIES) -> dict[str, Any]:
    """Only retention deletes object versions (and the trainer worker its own checkpoints'): a Deny of
    `s3:DeleteObjectVersion` for every other S3 identity outside its `delete_versions` patterns. SeaweedFS
    enforces it (its `Write` would otherwise allow it); on AWS and MinIO the IAM policies already do."""
    statements = []
    for spec in identities:
        if spec.s3 is None or spec.s3.configure_bucket:
            continue
        principal = {"AWS": [f"arn:aws:iam::{SEAWEEDFS_ACCOUNT}:user/{spec.name}"]}
        statement: dict[str, Any] = {
            "Sid": "VersionsStay" + "".join(part.title() for part in spec.name.split("-")),
            "Effect": "Deny",
            "Principal": principal,
            "Action": ["s3:DeleteObjectVersion"],
        }
        if spec.s3.delete_versions:
            statement["NotResource"] = _object_arns(bucket_name, spec.s3.delete_versions)
        else:
            statement["Resource"] = [f"arn:aws:s3:::{bucket_name}/*"]
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def iam_policy(access: S3Access, bucket_name: str) -> dict[str, Any]:
    """The identity's IAM policy (AWS, MinIO): exactly its verbs on its patterns."""
    bucket_arn = f"arn:aws:s3:::{bucket_name}"
    statements: list[dict[str, Any]] = []
    if access.configure_bucket:
        statements.append(
            {
                "Sid": "ProvisionTheBucket",
                "Effect": "Allow",
                "Action": [
                    "s3:CreateBucket",
                    "s3:ListBucket",
                    "s3:GetBucketVersioning",
                    "s3:PutBucketVersioning",
                    "s3:GetBucketPolicy",
                    "s3:PutBucketPolicy",
                ],
                "Resource": [bucket_arn],
            }
        )
    for sid, action, patterns in (
        ("Read", "s3:GetObject", access.read),
        ("Write", "s3:PutObject", access.write),
        ("Hide", "s3:DeleteObject", access.delete),
        ("DeleteVersions", "s3:DeleteObjectVersion", access.delete_versions),
    ):
        if patterns:
            statements.append(
                {
                    "Sid": sid,
                    "Effect": "Allow",
                    "Action": [action],
                    "Resource": _object_arns(bucket_name, patterns),
                }
            )
    if access.list:
        statements.append(
            {
                "Sid": "List",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:ListBucketVersions"],
                "Resource": [bucket_arn],
                "Condition": {"StringLike": {"s3:prefix": list(access.list)}},
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def iam_policies(bucket_name: str, identities: Iterable[Identity] = IDENTITIES) -> dict[str, Any]:
    """identity -> IAM policy, for every identity that has an S3 identity with any right."""
    return {
        spec.name: iam_policy(spec.s3, bucket_name)
        for spec in identities
        if spec.s3 is not None and not (spec.s3.empty and not spec.s3.configure_bucket)
    }
