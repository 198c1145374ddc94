"""Typed Python client of the Likeness gateway (v1): `LikenessClient` (blocking) and
`AsyncLikenessClient` (asyncio), with retries on 429/503, idempotent POSTs, cursor pagination,
progress streams (Server-Sent Events), image downloads and data exports.

    from likeness_client import LikenessClient

    with LikenessClient("https://likeness.example.com", token) as client:
        subject = client.create_subject(purpose="headshots", policy_version="2026-01")
        client.upload_photos(subject.id, ["me1.jpg", "me2.heic"])
        training = client.create_training(subject.id)
        for state in client.watch_training(training.id):
            print(state.status, state.progress.step, state.progress.total_steps)
"""

from likeness_client.async_client import AsyncLikenessClient
from likeness_client.audit_models import AuditEntry
from likeness_client.consent_models import PURPOSES, ConsentGrant, ConsentPolicy, ConsentWithdrawal
from likeness_client.deletion_models import ItemDeletion, TrainedModel
from likeness_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    LikenessError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    StreamError,
    TransportError,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
    UploadRejected,
)
from likeness_client.models import (
    TERMINAL_STATUSES,
    Background,
    Catalog,
    CatalogOption,
    Consent,
    Erasure,
    ErasureAccepted,
    ErasureReceipt,
    Health,
    JobAccepted,
    Page,
    Photo,
    Progress,
    Readiness,
    Reason,
    ReceiptKeys,
    ReceiptSignature,
    Render,
    RenderChoices,
    RenderedImage,
    Retention,
    RetentionPolicy,
    Style,
    Subject,
    TeamLook,
    TeamLookSpec,
    Training,
    UploadResult,
)
from likeness_client.photo_prep import PhotoNotPrepared
from likeness_client.retry import NO_RETRY, RetryPolicy
from likeness_client.settings import ClientSettings
from likeness_client.sse import ServerSentEvent, SSEDecoder
from likeness_client.summary_models import HeldCategory, HeldItem, SubjectSummary
from likeness_client.sync_client import LikenessClient
from likeness_client.usage_models import GpuUsage, JobUsage, Usage

__all__ = [
    "NO_RETRY",
    "PURPOSES",
    "TERMINAL_STATUSES",
    "ApiError",
    "AsyncLikenessClient",
    "AuditEntry",
    "Background",
    "BadRequest",
    "Catalog",
    "CatalogOption",
    "ClientSettings",
    "Conflict",
    "Consent",
    "ConsentGrant",
    "ConsentPolicy",
    "ConsentWithdrawal",
    "Erasure",
    "ErasureAccepted",
    "ErasureReceipt",
    "Forbidden",
    "Gone",
    "GpuUsage",
    "Health",
    "HeldCategory",
    "HeldItem",
    "ItemDeletion",
    "JobAccepted",
    "JobUsage",
    "LikenessClient",
    "LikenessError",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "Photo",
    "PhotoNotPrepared",
    "Progress",
    "RateLimited",
    "Readiness",
    "Reason",
    "ReceiptKeys",
    "ReceiptSignature",
    "Render",
    "RenderChoices",
    "RenderedImage",
    "Retention",
    "RetentionPolicy",
    "RetryPolicy",
    "SSEDecoder",
    "ServerError",
    "ServerSentEvent",
    "StreamError",
    "Style",
    "Subject",
    "SubjectSummary",
    "TeamLook",
    "TeamLookSpec",
    "TrainedModel",
    "Training",
    "TransportError",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMediaType",
    "UploadRejected",
    "UploadResult",
    "Usage",
]
