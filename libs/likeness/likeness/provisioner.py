"""Applies `likeness.provisioning` to the servers: streams, KV buckets and durable consumers on NATS; the
bucket, its versioning and its policy on S3. Idempotent: what exists and matches is left alone, what
differs is updated (and reported), what may not be updated is reported as drift for an operator.

`likeness bootstrap` runs it with the `bootstrap` identity; the dev stack and the test servers run it the
same way, and tests that need private buckets or consumers call `provision_nats` with their own specs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import nats
import nats.js.errors
from minio import Minio
from minio.commonconfig import ENABLED
from minio.error import S3Error
from minio.versioningconfig import VersioningConfig
from nats.js import JetStreamContext
from nats.js.api import StreamConfig, StreamInfo

from likeness.access_policies import bucket_policy
from likeness.bus import nats_servers
from likeness.config import CommonSettings
from likeness.provisioning import (
    AUDIT_STREAM,
    BUCKETS,
    CONSUMERS,
    FROZEN_STREAMS,
    RETIRED_CONSUMERS,
    STREAMS,
    Bounds,
    BucketSpec,
    ConsumerSpec,
    inbox_prefix,
)
from likeness.store import s3_client

log = logging.getLogger(__name__)

#: Stream fields we set and therefore compare (the server fills in the rest).
_STREAM_FIELDS = (
    "subjects",
    "retention",
    "storage",
    "max_age",
    "max_bytes",
    "max_msgs",
    "max_msgs_per_subject",
    "duplicate_window",
    "discard",
    "deny_delete",
    "deny_purge",
    "allow_rollup_hdrs",
    # Raised on a cluster by an update (JetStream copies the stream to the new peers).
    "num_replicas",
)
_CONSUMER_FIELDS = (
    "filter_subject",
    "ack_policy",
    "ack_wait",
    "max_deliver",
    "max_ack_pending",
    "deliver_subject",
    "deliver_group",
)


@dataclass(frozen=True)
class Change:
    """One thing provisioning did or found: `action` is created, updated, unchanged, drift or
    deleted (a retired consumer)."""

    kind: str
    name: str
    action: str
    detail: str = ""

    def line(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.action:9} {self.kind} {self.name}{detail}"


def _differences(current: Any, desired: Any, fields: Sequence[str]) -> list[str]:
    found = []
    for name in fields:
        want = getattr(desired, name, None)
        have = getattr(current, name, None)
        if want is None or _same(have, want):
            continue
        found.append(f"{name} {_show(have)} -> {_show(want)}")
    return found


def _same(have: Any, want: Any) -> bool:
    if isinstance(want, float) or isinstance(have, float):
        return have is not None and abs(float(have) - float(want)) < 1e-6
    if want is False and have is None:
        return True
    return bool(have == want)


def _show(value: Any) -> str:
    return str(getattr(value, "value", value))


# ------------------------------------------------------------------------------------------ NATS


async def ensure_stream(
    js: JetStreamContext, config: StreamConfig, *, frozen: bool = False, tighten_frozen: bool = False
) -> Change:
    """Creates the stream or updates it to `config`. A `frozen` stream (the audit trail) is only ever
    created: its drift is reported, and with `tighten_frozen` (an operator's credentials: the bootstrap
    identity may not update it) changed only where that keeps every record it holds."""
    assert config.name is not None
    try:
        info = await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        return Change("stream", config.name, "created")
    differences = _differences(info.config, config, _STREAM_FIELDS)
    if not differences:
        return Change("stream", config.name, "unchanged")
    if frozen and not (tighten_frozen and _only_tightens(info, config)):
        reason = "frozen" if not tighten_frozen else "it would loosen the stream or drop records"
        return Change("stream", config.name, "drift", f"{'; '.join(differences)} (left as is: {reason})")
    try:
        await js.update_stream(config)
    except nats.js.errors.APIError as error:
        return Change(
            "stream", config.name, "drift", f"{'; '.join(differences)} (refused: {error.description})"
        )
    return Change("stream", config.name, "updated", "; ".join(differences))


def _only_tightens(info: StreamInfo, config: StreamConfig) -> bool:
    """Whether updating to `config` keeps every record: no protection turned off, no bound below what the
    stream holds now, no shorter age."""
    current = info.config
    held = int(info.state.bytes or 0)
    if (current.deny_delete and not config.deny_delete) or (current.deny_purge and not config.deny_purge):
        return False
    if config.max_bytes is not None and 0 < config.max_bytes < max(held, current.max_bytes or 0):
        return False
    current_age = current.max_age or 0.0
    return not (config.max_age is not None and current_age > 0 and config.max_age < current_age)


async def ensure_bucket(js: JetStreamContext, spec: BucketSpec) -> Change:
    change = await ensure_stream(js, spec.stream_config())
    return Change("bucket", spec.name, change.action, change.detail)


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> Change:
    desired = spec.config()
    try:
        info = await js.consumer_info(spec.stream, spec.name)
    except nats.js.errors.NotFoundError:
        await js.add_consumer(spec.stream, desired)
        return Change("consumer", f"{spec.stream}/{spec.name}", "created")
    current = info.config
    differences = _differences(current, desired, _CONSUMER_FIELDS)
    name = f"{spec.stream}/{spec.name}"
    if not differences:
        return Change("consumer", name, "unchanged")
    try:
        await js.add_consumer(spec.stream, desired)
    except nats.js.errors.APIError as error:
        return Change("consumer", name, "drift", f"{'; '.join(differences)} (refused: {error.description})")
    return Change("consumer", name, "updated", "; ".join(differences))


async def retire_consumer(js: JetStreamContext, stream_name: str, name: str) -> Change | None:
    """Deletes a consumer the spec no longer has (the shared work-queue consumers, `RETIRED_CONSUMERS`):
    its whole-stream filter would overlap every tenant's. Its queued messages stay in the stream for the
    tenants' consumers. None when it is not there."""
    try:
        await js.consumer_info(stream_name, name)
    except nats.js.errors.NotFoundError:
        return None
    await js.delete_consumer(stream_name, name)
    return Change("consumer", f"{stream_name}/{name}", "deleted", "retired: per-tenant queues replace it")


async def provision_nats(
    js: JetStreamContext,
    streams: Iterable[StreamConfig] = STREAMS,
    buckets: Iterable[BucketSpec] = BUCKETS,
    consumers: Iterable[ConsumerSpec] = CONSUMERS,
    *,
    tighten_frozen: bool = False,
) -> list[Change]:
    """Streams first (consumers need them), then buckets, then consumers (after retiring the old ones)."""
    streams = list(streams)
    changes = [
        await ensure_stream(js, config, frozen=config.name in FROZEN_STREAMS, tighten_frozen=tighten_frozen)
        for config in streams
    ]
    changes += [await ensure_bucket(js, spec) for spec in buckets]
    provisioned = {config.name for config in streams}
    for stream_name, name in RETIRED_CONSUMERS:
        if stream_name in provisioned and (retired := await retire_consumer(js, stream_name, name)):
            changes.append(retired)
    changes += [await ensure_consumer(js, spec) for spec in consumers]
    return changes


# -------------------------------------------------------------------------------------------- S3


def provision_s3(client: Minio, bucket_name: str) -> list[Change]:
    """The bucket, with versioning on, and the policy that keeps object versions for retention."""
    changes = []
    if client.bucket_exists(bucket_name):
        changes.append(Change("s3 bucket", bucket_name, "unchanged"))
    else:
        client.make_bucket(bucket_name)
        changes.append(Change("s3 bucket", bucket_name, "created"))
    if client.get_bucket_versioning(bucket_name).status == ENABLED:
        changes.append(Change("s3 versioning", bucket_name, "unchanged"))
    else:
        client.set_bucket_versioning(bucket_name, VersioningConfig(ENABLED))
        changes.append(Change("s3 versioning", bucket_name, "updated", "enabled"))
    desired = bucket_policy(bucket_name)
    try:
        current: Any = json.loads(client.get_bucket_policy(bucket_name))
    except S3Error as error:
        if error.code != "NoSuchBucketPolicy":
            raise
        current = None
    if current is not None and _policy_shape(current) == _policy_shape(desired):
        changes.append(Change("s3 policy", bucket_name, "unchanged"))
    else:
        client.set_bucket_policy(bucket_name, json.dumps(desired))
        changes.append(Change("s3 policy", bucket_name, "created" if current is None else "updated"))
    return changes


# ------------------------------------------------------------------------------------- bootstrap


async def bootstrap(
    settings: CommonSettings,
    *,
    nats_side: bool = True,
    s3_side: bool = True,
    tighten_audit: bool = False,
    audit_max_bytes: int | None = None,
    bounds: Bounds | None = None,
) -> list[Change]:
    """Everything `likeness bootstrap` provisions, with the credentials of `settings` (the `bootstrap`
    identity's, or an operator's for `tighten_audit`); `bounds`: the operator's stream and bucket bounds
    (`ValueError` naming each problem before anything is touched)."""
    bounds = bounds or Bounds()
    if problems := bounds.problems():
        raise ValueError("; ".join(problems))
    changes: list[Change] = []
    if nats_side:
        streams = [
            replace(config, max_bytes=audit_max_bytes)
            if config.name == AUDIT_STREAM and audit_max_bytes
            else config
            for config in bounds.streams()
        ]
        nc = await nats.connect(
            nats_servers(settings.nats_url), name="likeness-bootstrap", **connect_options(settings)
        )
        try:
            changes += await provision_nats(
                nc.jetstream(), streams, bounds.buckets(), tighten_frozen=tighten_audit
            )
        finally:
            await nc.close()
    if s3_side:
        changes += await asyncio.to_thread(provision_s3, s3_client(settings), settings.s3_bucket)
    return changes


def connect_options(settings: CommonSettings) -> dict[str, Any]:
    """One attempt, no reconnects: a bootstrap that cannot reach NATS fails at once and says so."""
    options: dict[str, Any] = {"connect_timeout": 5, "max_reconnect_attempts": 1, "allow_reconnect": False}
    credentials = settings.nats_credentials()
    if credentials.user:
        options |= {
            "user": credentials.user,
            "password": credentials.password,
            "inbox_prefix": inbox_prefix(credentials.user),
        }
    return options


def _policy_shape(document: Any) -> Any:
    """A policy document as compared: servers may write a one-element list as its element."""
    if isinstance(document, dict):
        return {key: _policy_shape(value) for key, value in document.items()}
    if isinstance(document, list):
        shaped = [_policy_shape(item) for item in document]
        return shaped[0] if len(shaped) == 1 and not isinstance(shaped[0], dict) else shaped
    return document
