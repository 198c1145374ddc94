"""Ingest settings: the sanitization limits, the per-subject rules (documented defaults), concurrency and
the decoding sandbox."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator

from ingest.limits import SanitizeLimits, SubjectRules
from ingest.records import RejectedBound
from ingest.sandbox.worker_process import WorkerLimits
from likeness.config import AuditedSettings


class IngestSettings(AuditedSettings):
    service_name: str = "ingest"
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_pixels: int = Field(default=50_000_000, gt=0)
    min_side: int = Field(default=256, gt=0)
    min_face_fraction: float = 0.1
    min_sharpness: float = 0.03
    min_face_brightness: float = 0.15
    max_face_clipped: float = 0.3
    crop_size: int = Field(default=512, gt=0)

    #: Accepted photos one subject may have; uploads past it are refused with `too_many_photos`.
    max_photos_per_subject: int = 30
    #: Rejected verdicts one subject keeps (the oldest go first) and how long each is kept (issue 18).
    max_rejected_per_subject: int = Field(default=200, gt=0)
    rejected_verdict_ttl_seconds: float = Field(default=30 * 24 * 3600.0, ge=1)
    #: Perceptual-hash bits (of 64) within which a photo is the same picture as one already accepted.
    max_duplicate_distance: int = 10
    #: dlib distance from the consensus of the subject's accepted faces beyond which it is someone else.
    max_identity_distance: float = 0.6

    #: Photos sanitized at once per process; bounds CPU and memory (each holds at most one decoded image).
    max_concurrent: int = Field(default=2, gt=0)
    #: Uploads received at once per process (each buffers at most max_upload_bytes in memory); later
    #: ones wait, so a burst of uploads cannot hold more than this many files in memory.
    max_concurrent_uploads: int = Field(default=8, gt=0)
    #: An upload must be received within this many seconds of taking its slot (or by the caller's gRPC
    #: deadline, if sooner), else it ends with DEADLINE_EXCEEDED and frees its slot: a slow or compromised
    #: caller cannot hold the slots. The gateway's own upload deadline is LIKENESS_STREAM_TIMEOUT_SECONDS.
    upload_receive_seconds: float = Field(default=120.0, gt=0)

    # The decoding sandbox (`ingest.sandbox`): one worker process per `max_concurrent`.
    #: Decode uploads in the sandbox's workers. Off, they are decoded in this process, which holds the
    #: Vault, S3 and NATS credentials: development only (a machine without seccomp); production refuses.
    decode_sandbox: bool = True
    #: Seconds one decode may take in a worker before the worker is killed (the photo: `corrupt_image`).
    decode_timeout_seconds: float = Field(default=20.0, gt=0)
    #: Decodes a worker serves before it is replaced (an upload takes one, sometimes two). A decoder
    #: exploit lives at most this many jobs, seeing the uploads that reach its worker; 1 gives every job a
    #: fresh worker, for about 0.2 s of CPU each.
    decode_jobs_per_worker: int = Field(default=25, gt=0)
    #: Address space of a worker, in MiB (RLIMIT_AS). The costliest photo the default limits allow, a
    #: 50 MP 16-bit greyscale PNG, peaks at about 1.4 GiB; a decoder asking for more fails (`corrupt_image`).
    decode_memory_limit_mb: int = Field(default=2048, ge=512)
    #: CPU seconds one decode may use in a worker (RLIMIT_CPU, reset per job): a second line behind the
    #: timeout, for decoders that spin on several threads.
    decode_cpu_seconds: int = Field(default=20, gt=0)

    @model_validator(mode="after")
    def _refuse_decoding_outside_the_sandbox_in_production(self) -> IngestSettings:
        if self.is_production and not self.decode_sandbox:
            raise ValueError(
                "refusing production settings: LIKENESS_DECODE_SANDBOX=false would parse uploads in the "
                "process that holds the keys"
            )
        return self

    def limits(self) -> SanitizeLimits:
        return SanitizeLimits(
            max_bytes=self.max_upload_bytes,
            max_pixels=self.max_pixels,
            min_side=self.min_side,
            min_face_fraction=self.min_face_fraction,
            min_sharpness=self.min_sharpness,
            min_face_brightness=self.min_face_brightness,
            max_face_clipped=self.max_face_clipped,
            crop_size=self.crop_size,
        )

    def sandbox_limits(self) -> WorkerLimits:
        return WorkerLimits(
            timeout_seconds=self.decode_timeout_seconds,
            jobs=self.decode_jobs_per_worker,
            address_space_bytes=self.decode_memory_limit_mb * 1024 * 1024,
            cpu_seconds_per_job=self.decode_cpu_seconds,
        )

    def rejected_bound(self) -> RejectedBound:
        return RejectedBound(self.max_rejected_per_subject, self.rejected_verdict_ttl_seconds)

    def subject_rules(self) -> SubjectRules:
        return SubjectRules(
            max_photos=self.max_photos_per_subject,
            max_duplicate_distance=self.max_duplicate_distance,
            max_identity_distance=self.max_identity_distance,
        )


@lru_cache(maxsize=1)
def get_settings() -> IngestSettings:
    return IngestSettings()
