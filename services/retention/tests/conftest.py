"""Isolated retention instances against the session's real NATS, S3 and OpenBao.

Each test gets KV buckets of its own (a bucket prefix), a tenant of its own (so its S3 prefix is its own)
and, where it asks, a ManualClock: sweeps and deadlines then only ever see that test's subjects, whatever
else runs on the same servers.

Methods called directly (not over gRPC) run as the call of an explicit principal (`acting_as`): the
servicer's own checks then see the same token a real call's interceptor would have verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from likeness.method_access import acting_as
from likeness.object_names import subject_prefix
from likeness.provisioning import RETENTION_BUCKETS, retention_resources
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.timeutil import SYSTEM_CLOCK, Clock
from likeness.user_tokens import Principal
from likeness.v1 import retention_pb2
from likeness_dev.infra import Infra
from likeness_dev.testing import provision_for_test
from likeness_dev.tokens import ALL_SCOPES
from retention.config import RetentionSettings
from retention.records import RetentionRecords
from retention.service import RetentionServicer

CONSENT = retention_pb2.Consent(purpose="headshots", policy_version="2026-01")
#: The dev secret tests sign end users' tokens with (`likeness dev token` signs the same way).
TOKEN_SECRET = "retention-tests-token-secret-0123456789abcdef"


def tenant_wide(tenant: str) -> Principal:
    """A tenant's token with every scope and `tenant:all`: what a tenant's backend calls with."""
    return Principal(tenant=tenant, scopes=frozenset(ALL_SCOPES))


ES = retention_pb2.ErasureStatus


def retention_settings(infra: Infra, **overrides: Any) -> RetentionSettings:
    env = infra.endpoints.as_env()
    values: dict[str, Any] = {key.removeprefix("LIKENESS_").lower(): value for key, value in env.items()}
    values |= {
        "jwt_dev_secret": TOKEN_SECRET,
        "erasure_retry_initial_seconds": 0.2,
        "erasure_retry_max_seconds": 0.5,
        "hmac_secret": "retention-tests-hmac-secret",
    }
    return RetentionSettings.model_validate(values | overrides)


class Instances:
    """Builds retention replicas; all of one test share its bucket prefix unless told otherwise."""

    def __init__(self, infra: Infra) -> None:
        self.infra = infra
        self.prefix = f"t{secrets.token_hex(4)}_"
        self.tenant = f"t{secrets.token_hex(5)}"
        self.platforms: list[Platform] = []
        self.servicers: list[RetentionServicer] = []

    async def new(
        self, clock: Clock = SYSTEM_CLOCK, holder: str = "replica-a", **overrides: Any
    ) -> RetentionServicer:
        settings = retention_settings(
            self.infra, kv_bucket_prefix=self.prefix, replica_id=holder, **overrides
        )
        platform = await Platform.connect(settings, f"retention-test-{holder}")
        # The instance's private buckets and deadlines consumer, as bootstrap makes the real ones.
        await provision_for_test(platform.bus.js, *retention_resources(settings.kv_bucket_prefix))
        records = await RetentionRecords.open(platform.bus, settings.kv_bucket_prefix)
        servicer = RetentionServicer(platform, records, settings, clock)
        self.platforms.append(platform)
        self.servicers.append(servicer)
        return servicer

    async def close(self) -> None:
        for servicer in self.servicers:
            await servicer.eraser.stop()
        if self.platforms:
            js = self.platforms[0].bus.js
            for name in RETENTION_BUCKETS:
                # Best-effort cleanup of this test's private buckets and consumer.
                with contextlib.suppress(Exception):
                    await js.delete_key_value(f"{self.prefix}{name}")
            with contextlib.suppress(Exception):
                await js.delete_consumer("LIKENESS_EVENTS", f"{self.prefix}retention-deadlines")
        for platform in self.platforms:
            await platform.close()

    # ------------------------------------------------------------------------------------ helpers

    @staticmethod
    async def open_subject(servicer: RetentionServicer, tenant: str) -> retention_pb2.Subject:
        request = retention_pb2.OpenSubjectRequest(tenant=tenant, consent=CONSENT)
        # No context: OpenSubject only uses it to abort on invalid input (or a token that may not call).
        with acting_as(tenant_wide(tenant)):
            response = await servicer.OpenSubject(request, None)  # type: ignore[arg-type]
        return response.subject

    @staticmethod
    async def put_object(
        servicer: RetentionServicer, tenant: str, subject_id: str, path: str, data: bytes
    ) -> str:
        """Stores an encrypted object at `t/<tenant>/s/<subject>/<path>`; returns its key."""
        key = subject_prefix(tenant, subject_id) + path
        kind = {"photos": "photo", "faces": "face", "models": "lora", "renders": "render"}[path.split("/")[0]]
        ref = ObjectRef(tenant, subject_id, key, kind)
        await asyncio.to_thread(servicer.platform.sealed.put, ref, data)
        return key

    @staticmethod
    async def keys_under(servicer: RetentionServicer, tenant: str, subject_id: str) -> set[str]:
        """Every object version's key under the subject's prefix (delete markers included)."""
        prefix = subject_prefix(tenant, subject_id)
        versions = await asyncio.to_thread(servicer.platform.store.list_versions, prefix)
        return {v.key for v in versions}

    @staticmethod
    async def wait_for(
        check: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "condition"
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await check():
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)

    async def wait_erased(
        self, servicer: RetentionServicer, tenant: str, erasure_id: str
    ) -> retention_pb2.Erasure:
        async def completed() -> bool:
            erasure = await servicer.records.get_erasure(tenant, erasure_id)
            return erasure is not None and erasure.status == ES.ERASURE_STATUS_COMPLETED

        await self.wait_for(completed, what="the erasure to complete")
        await servicer.eraser.wait_all()  # the receipt is issued right after completion
        erasure = await servicer.records.get_erasure(tenant, erasure_id)
        assert erasure is not None
        return erasure


@pytest.fixture
async def instances(infra: Infra) -> AsyncIterator[Instances]:
    made = Instances(infra)
    try:
        yield made
    finally:
        await made.close()
