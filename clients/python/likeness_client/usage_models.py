"""The tenant's quotas and usage (`GET /v1/usage`, issue 18) as typed models."""

from __future__ import annotations

from likeness_client.models import Model


class JobUsage(Model):
    #: Jobs of this kind queued or running now.
    in_flight: int
    #: The most the tenant may have queued or running at once (past it: 429 `quota_exceeded`).
    limit: int


class GpuUsage(Model):
    #: The UTC day, `YYYYMMDD`.
    day: str
    #: Seconds GPU workers held the tenant's jobs this UTC day.
    seconds: float
    limit: float
    #: Seconds until the next UTC day, when `seconds` starts over.
    resets_in_seconds: int


class Usage(Model):
    trainings: JobUsage
    renders: JobUsage
    gpu_seconds: GpuUsage
    max_training_steps: int
