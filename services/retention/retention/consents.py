"""Consent grants of subjects, and tenants' consent policies: retention owns both (`retention.records`).

A subject's record (`SubjectConsents`, KV `consents`, `<tenant>.<subject>`) keeps every grant it was ever
given, oldest first: a withdrawal marks grants withdrawn rather than deleting them, so the person's consent
history can be shown and exported. Every write is compare-and-set. The record goes with the subject's
erasure. A tenant's `ConsentPolicy` lives in the `tenants` bucket under `<tenant>.consent_policy`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import nats.js.errors

from likeness import ids
from likeness.bus import kv_forget, kv_get
from likeness.consent import PURPOSES, consent_key, is_live, read_consents
from likeness.timeutil import Clock, to_timestamp
from likeness.v1 import retention_pb2
from retention.records import RetentionRecords

#: A policy version names the text the person agreed to (a date, a semver...), in the tenant's own words: the
#: rule consent always had at opening (something not blank, at most this long), so existing callers keep
#: working.
MAX_POLICY_VERSION = 64
#: A subject keeps at most this many grants in its history (a bound on its record, STYLE principle 13).
MAX_GRANTS = 200


class InvalidGrant(ValueError):
    """A grant request that cannot be recorded; `code` is the machine code, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Grantor:
    """Who grants or withdraws: `likeness.consent.BY_SUBJECT` or `BY_TENANT`, and the token's client."""

    kind: str
    client: str = ""


def validate_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise InvalidGrant("invalid_purpose", f"The purpose must be one of: {', '.join(PURPOSES)}.")


def validate_grant(purpose: str, policy_version: str, expires_at: datetime | None, now: datetime) -> None:
    validate_purpose(purpose)
    if not policy_version.strip() or len(policy_version) > MAX_POLICY_VERSION:
        raise InvalidGrant(
            "invalid_policy_version",
            f"The policy version is required: 1 to {MAX_POLICY_VERSION} characters, not all blank.",
        )
    if expires_at is not None and expires_at <= now:
        raise InvalidGrant("invalid_expiry", "A grant's expiry must be in the future.")


def policy_key(tenant: str) -> str:
    return f"{tenant}.consent_policy"


class ConsentBook:
    def __init__(self, records: RetentionRecords, clock: Clock) -> None:
        self.records = records
        self.clock = clock

    async def history(self, tenant: str, subject_id: str) -> list[retention_pb2.ConsentGrant]:
        found = await read_consents(self.records.consents, tenant, subject_id)
        return list(found.grants) if found is not None else []

    async def grant(
        self,
        tenant: str,
        subject_id: str,
        purpose: str,
        policy_version: str,
        expires_at: datetime | None,
        grantor: Grantor,
    ) -> retention_pb2.ConsentGrant:
        """Records a live grant (validated first: bad input changes nothing). A live grant of the same
        purpose stays in the history; the newest live one is the one checked."""
        now = self.clock.now()
        validate_grant(purpose, policy_version, expires_at, now)
        grant = retention_pb2.ConsentGrant(
            id=ids.new_id("cns"),
            purpose=purpose,
            policy_version=policy_version,
            granted_at=to_timestamp(now),
            granted_by=grantor.kind,
            client=grantor.client,
        )
        if expires_at is not None:
            grant.expires_at.CopyFrom(to_timestamp(expires_at))

        def add(record: retention_pb2.SubjectConsents) -> bool:
            if len(record.grants) >= MAX_GRANTS:
                raise InvalidGrant("too_many_grants", f"A subject keeps at most {MAX_GRANTS} grants.")
            record.grants.append(grant)
            return True

        await self._change(tenant, subject_id, add)
        return grant

    async def withdraw(
        self, tenant: str, subject_id: str, purpose: str, grantor: Grantor
    ) -> tuple[list[retention_pb2.ConsentGrant], bool]:
        """Withdraws every live grant of `purpose`: (the grants withdrawn now, whether any live grant of any
        purpose is left)."""
        validate_purpose(purpose)
        now = self.clock.now()
        withdrawn: list[retention_pb2.ConsentGrant] = []

        def mark(record: retention_pb2.SubjectConsents) -> bool:
            withdrawn.clear()
            for grant in record.grants:
                if grant.purpose == purpose and is_live(grant, now):
                    grant.withdrawn_at.CopyFrom(to_timestamp(now))
                    grant.withdrawn_by = grantor.kind
                    withdrawn.append(grant)
            return bool(withdrawn)

        record = await self._change(tenant, subject_id, mark)
        any_left = any(is_live(grant, now) for grant in record.grants)
        return [_copy(grant) for grant in withdrawn], any_left

    async def drop(self, tenant: str, subject_id: str) -> int:
        """Removes the subject's grants (its erasure): 1 if there was a record."""
        if await read_consents(self.records.consents, tenant, subject_id) is None:
            return 0
        # Forgotten, not purged: a purge marker's NATS subject would name the subject for good.
        await kv_forget(self.records.consents, consent_key(tenant, subject_id))
        return 1

    async def _change(
        self, tenant: str, subject_id: str, change: Callable[[retention_pb2.SubjectConsents], bool]
    ) -> retention_pb2.SubjectConsents:
        key = consent_key(tenant, subject_id)
        for _ in range(20):
            found = await kv_get(self.records.consents, key, retention_pb2.SubjectConsents)
            record = (
                found[0] if found else retention_pb2.SubjectConsents(tenant=tenant, subject_id=subject_id)
            )
            if (record.tenant, record.subject_id) != (tenant, subject_id):
                # A record that lies about whose it is: start the history again rather than extend it.
                record = retention_pb2.SubjectConsents(tenant=tenant, subject_id=subject_id)
            if not change(record):
                return record
            try:
                if found is None:
                    await self.records.consents.create(key, record.SerializeToString())
                else:
                    await self.records.consents.update(key, record.SerializeToString(), last=found[1])
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            return record
        raise RuntimeError("consent record kept changing under us")

    # ------------------------------------------------------------------------------------------ policy

    async def policy(self, tenant: str) -> retention_pb2.ConsentPolicy:
        found = await kv_get(self.records.tenants, policy_key(tenant), retention_pb2.ConsentPolicy)
        return found[0] if found else retention_pb2.ConsentPolicy()

    async def set_policy(self, tenant: str, policy: retention_pb2.ConsentPolicy) -> None:
        await self.records.tenants.put(policy_key(tenant), policy.SerializeToString())


def _copy(grant: retention_pb2.ConsentGrant) -> retention_pb2.ConsentGrant:
    copied = retention_pb2.ConsentGrant()
    copied.CopyFrom(grant)
    return copied
