"""Who is calling, as the gateway's limits and idempotency records count it: a tenant and one of its callers.

An end user's token is its person (`sub`); a token without `sub` is the back end it was issued to (its
`client_id` or `azp` claim); a token naming neither is the tenant's anonymous back end, shared by every
such token of the tenant. The key lives in memory (rate buckets, stream slots) and inside the HMAC of
idempotency record ids: never in a log line, a metric label or a NATS subject.
"""

from __future__ import annotations

from typing import NamedTuple

from likeness.user_tokens import Principal


class Caller(NamedTuple):
    tenant: str
    #: `sub:<subject>`, `client:<client id>` or `tenant`.
    name: str


def caller_of(principal: Principal) -> Caller:
    if principal.subject is not None:
        return Caller(principal.tenant, f"sub:{principal.subject}")
    if principal.client is not None:
        return Caller(principal.tenant, f"client:{principal.client}")
    return Caller(principal.tenant, "tenant")
