"""The provisioning spec agrees with the code that binds to what it provisions, and its derived rights
say what the architecture says (no server: these read the spec and the services' own constants)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from gateway.config import GatewaySettings
from ingest.records import PHOTOS_BUCKET
from likeness import consent as likeness_consent
from likeness import provisioning
from likeness.access_policies import bucket_policy, iam_policies, nats_permissions
from likeness.config import CommonSettings
from likeness.job_metrics import RENDER, TRAIN
from likeness.provisioning import (
    AUDIT_STREAM,
    BOOTSTRAP,
    BUCKETS,
    CONSUMERS,
    GIB,
    IDENTITIES,
    MIB,
    RETENTION,
    SERVICE_IDENTITIES,
    identity,
    owner_of_consumer,
)
from renderer.records import RENDERS_BUCKET
from renderer.team_looks import TEAM_LOOKS_BUCKET
from renderer.worker import RenderWorker
from retention import records as retention_records
from trainer.records import TRAININGS_BUCKET
from trainer.worker import TrainingWorker


def test_the_services_bind_to_the_names_bootstrap_provisions() -> None:
    names = {spec.name for spec in BUCKETS}
    assert {PHOTOS_BUCKET, RENDERS_BUCKET, TEAM_LOOKS_BUCKET, TRAININGS_BUCKET} <= names
    retention = (
        retention_records.SUBJECTS_BUCKET,
        retention_records.ERASURES_BUCKET,
        retention_records.TENANTS_BUCKET,
        retention_records.DEADLINES_BUCKET,
        retention_records.LEASES_BUCKET,
        retention_records.RECEIPTS_BUCKET,
        retention_records.CONSENTS_BUCKET,
        retention_records.SUBJECT_ORDER_BUCKET,
    )
    assert retention == provisioning.RETENTION_BUCKETS
    # Trainer and renderer read retention's grants under the name retention writes them.
    assert likeness_consent.CONSENTS_BUCKET == retention_records.CONSENTS_BUCKET
    gateway = GatewaySettings()
    assert gateway.idempotency_bucket == provisioning.GATEWAY_IDEMPOTENCY_BUCKET
    bucket = provisioning.bucket(gateway.idempotency_bucket)
    assert bucket.ttl == gateway.idempotency_ttl_seconds, "records expire when the gateway expects"
    assert gateway.erasures_durable == provisioning.erasures_consumer_name("gateway")
    assert TrainingWorker.queues == TRAIN.queues == provisioning.TRAIN_QUEUES
    assert RenderWorker.queues == RENDER.queues == provisioning.RENDER_QUEUES
    assert TRAIN.stream == provisioning.TRAIN_STREAM
    assert RENDER.stream == provisioning.RENDER_STREAM


def test_every_consumer_has_exactly_one_owner_and_every_bucket_one_service() -> None:
    for spec in CONSUMERS:
        owners = [found.name for found in IDENTITIES if spec.name in found.nats.consumers]
        assert owners == [owner_of_consumer(spec.name)], spec.name
    for spec in BUCKETS:
        if spec.name == provisioning.GPU_USAGE_BUCKET:
            continue  # written key by key (below)
        writers = {found.name.removesuffix("-worker") for found in IDENTITIES if spec.name in found.nats.kv}
        assert len(writers) == 1, f"{spec.name} is written by {writers}: one owner per bucket"


def test_gpu_usage_keys_are_written_by_the_gpu_workers_only_each_its_own_kind() -> None:
    """Each GPU worker writes only its own kind's keys (`<day>.<tenant>.<kind>.<instance>`); the serve roles
    read them (quotas, the usage report); nobody holds the bucket whole."""
    puts = {
        found.name: [pattern for name, pattern in found.nats.kv_put if name == provisioning.GPU_USAGE_BUCKET]
        for found in IDENTITIES
    }
    assert {name: patterns for name, patterns in puts.items() if patterns} == {
        "trainer-worker": ["*.*.train.*"],
        "renderer-worker": ["*.*.render.*"],
    }
    assert not [found.name for found in IDENTITIES if provisioning.GPU_USAGE_BUCKET in found.nats.kv]
    readers = {found.name for found in IDENTITIES if provisioning.GPU_USAGE_BUCKET in found.nats.kv_read}
    assert readers == {"trainer", "renderer"}
    assert provisioning.bucket(provisioning.GPU_USAGE_BUCKET).ttl == 2 * 24 * 3600.0


def test_the_train_stream_holds_one_job_per_subject_and_refuses_a_second() -> None:
    train = provisioning.stream(provisioning.TRAIN_STREAM)
    assert (train.max_msgs_per_subject, train.discard_new_per_subject) == (1, True)
    assert provisioning.stream(provisioning.RENDER_STREAM).max_msgs_per_subject in (None, -1)


def test_every_stream_and_bucket_is_bounded_and_the_audit_stream_fails_closed() -> None:
    assert all((config.max_bytes or 0) > 0 for config in provisioning.STREAMS)
    assert all(spec.max_bytes > 0 for spec in BUCKETS)
    audit = provisioning.stream(AUDIT_STREAM)
    assert audit.deny_delete
    assert audit.deny_purge
    assert audit.discard is not None
    assert audit.discard.value == "new"


def test_every_stream_has_an_age_bound_and_work_and_evidence_fail_closed() -> None:
    """Issue 18: streams age out (events, audit, queued jobs); jobs, audit and every KV bucket refuse new
    writes when full rather than drop old work or evidence."""
    assert all((config.max_age or 0) > 0 for config in provisioning.STREAMS)
    fail_closed = {AUDIT_STREAM, provisioning.TRAIN_STREAM, provisioning.RENDER_STREAM}
    for config in provisioning.STREAMS:
        if config.name in fail_closed:
            assert config.discard is not None, config.name
            assert config.discard.value == "new", config.name
    assert all(spec.stream_config().discard.value == "new" for spec in BUCKETS)  # type: ignore[union-attr]


def test_operator_bounds_replace_the_specs_and_bad_ones_are_named() -> None:
    bounds = provisioning.Bounds(
        {"LIKENESS_EVENTS": 4 * GIB, "photos": 256 * MIB}, {"LIKENESS_JOBS_RENDER": 86400}
    )
    events = next(config for config in bounds.streams() if config.name == "LIKENESS_EVENTS")
    render = next(config for config in bounds.streams() if config.name == "LIKENESS_JOBS_RENDER")
    photos = next(spec for spec in bounds.buckets() if spec.name == "photos")
    assert (events.max_bytes, render.max_age, photos.max_bytes) == (4 * GIB, 86400, 256 * MIB)
    assert bounds.problems() == []
    wrong = provisioning.Bounds(
        {"LIKENESS_EVENT": GIB, "photos": 10}, {"photos": 86400.0, "LIKENESS_AUDIT": 60}
    )
    problems = " | ".join(wrong.problems())
    assert "no stream or bucket 'LIKENESS_EVENT'" in problems
    assert "byte bound of 'photos' must be at least 1 MiB" in problems
    assert "no stream 'photos' takes an age bound" in problems
    assert "age bound of 'LIKENESS_AUDIT' must be at least one hour" in problems


def test_a_cluster_keeps_every_stream_and_bucket_at_the_replicas_asked_for() -> None:
    single = provisioning.Bounds()
    assert {config.num_replicas for config in single.streams()} == {1}
    assert {spec.stream_config().num_replicas for spec in single.buckets()} == {1}
    clustered = provisioning.Bounds(replicas=3)
    assert {config.num_replicas for config in clustered.streams()} == {3}
    assert {spec.stream_config().num_replicas for spec in clustered.buckets()} == {3}
    assert clustered.problems() == []
    assert "replicas must be 1 to 5" in " | ".join(provisioning.Bounds(replicas=7).problems())
    assert "replicas must be 1 to 5" in " | ".join(provisioning.Bounds(replicas=0).problems())


def test_only_retention_may_announce_an_erasure_or_touch_the_audit_trail_records() -> None:
    for spec in IDENTITIES:
        permissions = nats_permissions(spec)
        announces = "evt.*.*.subject.erased" in permissions.publish_allow
        assert announces == (spec.name == RETENTION), spec.name
        assert "evt.*.*.subject.erased" in permissions.publish_deny or spec.name == RETENTION
        assert f"$JS.API.STREAM.PURGE.{AUDIT_STREAM}" in permissions.publish_deny
        assert f"$JS.API.STREAM.UPDATE.{AUDIT_STREAM}" in permissions.publish_deny


def test_no_identity_may_read_every_reply_or_the_whole_bus() -> None:
    for spec in IDENTITIES:
        permissions = nats_permissions(spec)
        assert "_INBOX.>" not in permissions.subscribe_allow
        assert f"_INBOX.{spec.name}.>" in permissions.subscribe_allow
        assert not {">", "evt.>", "$JS.API.>", "$KV.>"} & set(permissions.publish_allow), spec.name


def test_the_gateway_touches_only_its_bucket_its_consumer_and_its_feeds() -> None:
    permissions = nats_permissions(identity("gateway"))
    assert all(
        subject.startswith(("$KV.gateway_idempotency.", "$JS.ACK.LIKENESS_EVENTS.gateway-erasures."))
        or subject.endswith(("KV_gateway_idempotency", "LIKENESS_EVENTS.gateway-erasures"))
        or subject == "ratelimit.gateway.sync"
        for subject in permissions.publish_allow
    ), permissions.publish_allow
    assert identity("gateway").s3 is None


def test_only_the_gateway_speaks_on_the_rate_limit_sync_subject() -> None:
    """Its replicas' reports are core NATS between them alone: no other identity may forge or read one."""
    for spec in IDENTITIES:
        permissions = nats_permissions(spec)
        speaks = "ratelimit.gateway.sync" in permissions.publish_allow
        hears = "ratelimit.gateway.sync" in permissions.subscribe_allow
        assert (speaks, hears) == ((True, True) if spec.name == "gateway" else (False, False)), spec.name
    # No stream stores the reports (they are worth something for a fraction of a second).
    assert not any(
        subject.split(".")[0] in {"ratelimit", ">"}
        for config in provisioning.STREAMS
        for subject in config.subjects or ()
    )


def test_versions_are_deleted_by_retention_and_by_gpu_workers_of_their_own_attempts_only() -> None:
    policies = iam_policies("b")
    holders = {
        name: statement["Resource"]
        for name, policy in policies.items()
        for statement in policy["Statement"]
        if "s3:DeleteObjectVersion" in statement["Action"]
    }
    assert holders == {
        RETENTION: ["arn:aws:s3:::b/t/*"],
        "trainer-worker": ["arn:aws:s3:::b/t/*/s/*/models/*/ckpt-*"],
        "renderer-worker": ["arn:aws:s3:::b/t/*/s/*/renders/*"],
        # Not the render API: a rejected image's versions are retention's to remove (PurgeItem, issue 16).
    }
    denied = {principal for s in bucket_policy("b")["Statement"] for principal in s["Principal"]["AWS"]}
    expected = {name for name in SERVICE_IDENTITIES if identity(name).s3 is not None}
    assert {arn.rsplit("/", 1)[1] for arn in denied} == expected
    assert BOOTSTRAP not in policies or "s3:GetObject" not in str(policies[BOOTSTRAP])


def test_production_refuses_a_development_nats_password() -> None:
    values = {
        "env": "production",
        "nats_url": "tls://nats:4222",
        "nats_user": "ingest",
        "nats_password": SecretStr("dev"),
    }
    with pytest.raises(ValidationError, match="LIKENESS_NATS_PASSWORD is a development value"):
        CommonSettings.model_validate(values)
