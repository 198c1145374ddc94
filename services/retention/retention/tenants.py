"""Tenants' retention schedules, in the `tenants` KV bucket owned by retention (one key per tenant).

A tenant without a record gets the service defaults (settings). Schedules are set through retention's
API only (`PUT /v1/retention-policy`, `likeness retention policy set`) and apply to subjects opened after.
"""

from __future__ import annotations

from nats.js.kv import KeyValue

from likeness.bus import kv_get
from likeness.v1 import retention_pb2
from retention.config import RetentionSettings
from retention.schedule import Schedule, effective_schedule, validate_tenant_schedule


class TenantPolicies:
    def __init__(self, kv: KeyValue, settings: RetentionSettings) -> None:
        self.kv = kv
        self.settings = settings

    async def chosen(self, tenant: str) -> Schedule | None:
        """What the tenant set, as set (zeros mean "the default"), or None."""
        found = await kv_get(self.kv, tenant, retention_pb2.RetentionSchedule)
        return found[0] if found else None

    async def effective(self, tenant: str) -> tuple[Schedule, bool]:
        """The schedule a subject opened now gets, and whether the tenant chose it."""
        chosen = await self.chosen(tenant)
        return effective_schedule(chosen, self.settings), chosen is not None

    async def set(self, tenant: str, schedule: Schedule) -> Schedule:
        """Stores the tenant's choice; returns what subjects will get (defaults filled in, capped)."""
        validate_tenant_schedule(schedule)
        await self.kv.put(tenant, schedule.SerializeToString())
        return effective_schedule(schedule, self.settings)

    async def clear(self, tenant: str) -> None:
        await self.kv.delete(tenant)
