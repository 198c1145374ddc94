"""Protobuf messages -> API models: enums lower-case without their prefix, unset timestamps as null."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from gateway import schemas
from likeness.v1 import common_pb2, ingest_pb2, renderer_pb2, retention_pb2, trainer_pb2


def enum_name(enum: Any, value: int, prefix: str) -> Any:
    """`JOB_STATUS_SUCCEEDED` -> `"succeeded"`; a value this gateway does not know -> `"unspecified"`."""
    try:
        name: str = enum.Name(value)
    except ValueError:
        return "unspecified"
    return name.removeprefix(prefix).lower()


def timestamp(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    value: Timestamp = getattr(message, field)
    return value.ToDatetime(tzinfo=UTC)


def job_status(value: int) -> Any:
    return enum_name(common_pb2.JobStatus, value, "JOB_STATUS_")


def progress(value: common_pb2.Progress) -> schemas.Progress:
    return schemas.Progress(step=value.step, total_steps=value.total_steps)


def retention(schedule: retention_pb2.RetentionSchedule) -> schemas.Retention:
    return schemas.Retention(
        photos_days=schedule.photos_days,
        photos_deleted_after_training=schedule.photos_deleted_after_training,
        models_days=schedule.models_days,
        renders_days=schedule.renders_days,
        inactivity_days=schedule.inactivity_days,
    )


def retention_policy(value: retention_pb2.GetRetentionPolicyResponse) -> schemas.RetentionPolicy:
    return schemas.RetentionPolicy(
        schedule=retention(value.schedule),
        tenant_specific=value.tenant_specific,
        hard_cap_days=value.hard_cap_days,
        backups_retention_days=value.backups_retention_days,
        text=value.text,
    )


def team_look(value: renderer_pb2.TeamLook) -> schemas.TeamLook:
    return schemas.TeamLook(
        id=value.id,
        name=value.name,
        style=value.style,
        background=value.background,
        outfit=value.outfit or None,
        lighting=value.lighting or None,
        seed_policy=enum_name(renderer_pb2.SeedPolicy, value.seed_policy, "SEED_POLICY_"),
        seed=value.seed,
        created_at=timestamp(value, "created_at"),
        updated_at=timestamp(value, "updated_at"),
    )


def subject(value: retention_pb2.Subject) -> schemas.Subject:
    consent = None
    if value.HasField("consent"):
        consent = schemas.Consent(
            purpose=value.consent.purpose,
            policy_version=value.consent.policy_version,
            given_at=timestamp(value.consent, "given_at"),
        )
    return schemas.Subject(
        id=value.id,
        status=enum_name(retention_pb2.SubjectStatus, value.status, "SUBJECT_STATUS_"),
        created_at=timestamp(value, "created_at"),
        consent=consent,
        retention=retention(value.retention),
        delete_by=timestamp(value, "delete_by"),
    )


def _photo_fields(value: ingest_pb2.Photo) -> dict[str, Any]:
    return {
        "id": value.id,
        "status": enum_name(ingest_pb2.PhotoStatus, value.status, "PHOTO_STATUS_"),
        "reasons": [schemas.Reason(code=reason.code, message=reason.message) for reason in value.reasons],
        "width": value.width or None,
        "height": value.height or None,
        "scores": dict(value.scores) or None,
        "created_at": timestamp(value, "created_at"),
    }


def photo(value: ingest_pb2.Photo) -> schemas.Photo:
    return schemas.Photo(**_photo_fields(value))


def uploaded_photo(value: ingest_pb2.Photo, filename: str | None) -> schemas.UploadedPhoto:
    return schemas.UploadedPhoto(filename=filename, **_photo_fields(value))


def training(value: trainer_pb2.Training) -> schemas.Training:
    return schemas.Training(
        id=value.id,
        subject_id=value.subject_id,
        status=job_status(value.status),
        progress=progress(value.progress),
        error=value.error or None,
        created_at=timestamp(value, "created_at"),
        updated_at=timestamp(value, "updated_at"),
    )


def render(value: renderer_pb2.Render) -> schemas.Render:
    # Whether the identity gate looked at the images (its face count means something only then).
    identity_scored = value.quality.gate in (
        renderer_pb2.QUALITY_GATE_SCORE,
        renderer_pb2.QUALITY_GATE_ENFORCE,
    )
    return schemas.Render(
        id=value.id,
        subject_id=value.subject_id,
        training_id=value.training_id or None,
        instant=value.instant,
        status=job_status(value.status),
        styles=list(value.styles),
        images_per_style=value.images_per_style,
        progress=progress(value.progress),
        images=[
            schemas.RenderedImage(
                id=image.id,
                style=image.style,
                seed=image.seed,
                url=f"/v1/renders/{value.id}/images/{image.id}",
                quality=image_quality(image.quality, identity_scored) if image.HasField("quality") else None,
                prompt_sha256=image.prompt_sha256 or None,
            )
            for image in value.images
        ],
        error=value.error or None,
        created_at=timestamp(value, "created_at"),
        updated_at=timestamp(value, "updated_at"),
        team_look_id=value.team_look_id or None,
        background=value.background or None,
        outfit=value.outfit or None,
        lighting=value.lighting or None,
        quality=render_quality(value.quality) if value.HasField("quality") else None,
        priority="bulk" if value.priority == renderer_pb2.RENDER_PRIORITY_BULK else "interactive",
    )


def _gate(value: renderer_pb2.QualityGate.ValueType) -> Any:
    name = enum_name(renderer_pb2.QualityGate, value, "QUALITY_GATE_")
    return None if name == "unspecified" else name


def image_quality(value: renderer_pb2.ImageQuality, identity_scored: bool) -> schemas.ImageQuality:
    identity = value.HasField("identity_distance")
    return schemas.ImageQuality(
        faces=value.faces if identity_scored else None,
        identity_distance=round(value.identity_distance, 4) if identity else None,
        rerolls=value.rerolls,
        passed=value.passed,
        safety_scores={label: round(score, 4) for label, score in value.safety_scores.items()},
        safety_flags=list(value.safety_flags),
    )


def render_quality(value: renderer_pb2.RenderQuality) -> schemas.RenderQuality:
    return schemas.RenderQuality(
        identity_gate=_gate(value.gate),
        safety_gate=_gate(value.safety_gate),
        images_requested=value.images_requested,
        rerolls=value.rerolls,
        failures=value.failures,
        templates=value.templates,
        dropped=dict(value.drop_reasons),
        safety_flags=dict(value.safety_flags),
        rejected=value.rejected,
        note=value.note or None,
    )


def style(value: renderer_pb2.Style) -> schemas.Style:
    return schemas.Style(id=value.id, name=value.name, description=value.description)


def catalog_option(value: renderer_pb2.CatalogOption) -> schemas.CatalogOption:
    return schemas.CatalogOption(
        id=value.id, name=value.name, description=value.description, preview=value.preview
    )


def erasure(value: retention_pb2.Erasure) -> schemas.Erasure:
    return schemas.Erasure(
        id=value.id,
        tenant=value.tenant,
        subject_hmac=value.subject_hmac,
        status=enum_name(retention_pb2.ErasureStatus, value.status, "ERASURE_STATUS_"),
        cause=value.cause,
        key_name=value.key_name,
        requested_at=timestamp(value, "requested_at"),
        key_destroyed_at=timestamp(value, "key_destroyed_at"),
        completed_at=timestamp(value, "completed_at"),
        objects_deleted=value.objects_deleted,
        bytes_deleted=value.bytes_deleted,
        records_deleted=value.records_deleted,
        events_purged=value.events_purged,
        backups_expire_by=timestamp(value, "backups_expire_by"),
        last_error=value.last_error or None,
        attempts=value.attempts,
    )


def audit_entry(entry: retention_pb2.AuditEntry) -> schemas.AuditEntry:
    return schemas.AuditEntry(
        sequence=entry.sequence,
        action=entry.action,
        at=timestamp(entry, "at"),
        principal=entry.principal,
        purpose=entry.purpose or None,
        outcome=entry.outcome,
        resource_id=entry.resource_id or None,
        notice=entry.notice or None,
        actor=entry.actor,
        subject_pseudonym=entry.subject_hmac or None,
    )


#: A render submission's priority, in the renderer's words (absent: the renderer's default).
RENDER_PRIORITIES: dict[str | None, renderer_pb2.RenderPriority.ValueType] = {
    None: renderer_pb2.RENDER_PRIORITY_UNSPECIFIED,
    "interactive": renderer_pb2.RENDER_PRIORITY_INTERACTIVE,
    "bulk": renderer_pb2.RENDER_PRIORITY_BULK,
}
