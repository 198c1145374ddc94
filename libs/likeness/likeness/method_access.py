"""What each gRPC method asks of the end user's token, and the checks a method runs against its request.

Every service declares a table next to its servicer (`<service>/method_rules.py`): for each method of its
gRPC service, a `MethodRule` saying whether it needs a token at all, which scopes may call it, and what
the token must be bound to. `likeness.grpc_user_tokens.UserTokenInterceptor` enforces the table before
the method runs (a method missing from it is refused: a new method cannot slip through), and exposes the
verified `Principal` to the method through a context variable. The method then checks its own request
with `require_tenant` / `require_subject` (the request's tenant must be the token's; an end user's token
may touch only its own subject), and `may_touch` for a subject it learns only from a record (a job, an
erasure), answering NOT_FOUND when the token may not see it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from likeness.rpc_errors import abort
from likeness.user_tokens import TENANT_WIDE_SCOPE, Principal

Context = grpc.aio.ServicerContext[object, object]


class Binding(StrEnum):
    """What a method's token must be bound to."""

    #: No token: the method holds no tenant's or person's data (the style catalog, public keys).
    PUBLIC = "public"
    #: No token: the service acts under its own identity on what its own schedule already made due
    #: (Sweep); the caller chooses nothing and receives only counts. Who may call it is the caller table's
    #: business (mutual TLS identities), not a user's.
    OPERATOR = "operator"
    #: A token of the request's tenant; touches no existing subject (opening one, the tenant's policies
    #: and looks). `end_user` says whether an end user's token may call it.
    TENANT = "tenant"
    #: One subject of the tenant: an end user's token for that subject, or a tenant-wide token.
    SUBJECT = "subject"
    #: Every subject of the tenant (listing them): a tenant-wide token only (`tenant:all`, no `sub`).
    TENANT_WIDE = "tenant_wide"


#: Bindings that need a token.
TOKEN_BINDINGS = frozenset({Binding.TENANT, Binding.SUBJECT, Binding.TENANT_WIDE})


@dataclass(frozen=True)
class MethodRule:
    binding: Binding
    #: Any one of these scopes admits the caller (the scopes of every gateway route that calls it).
    scopes: frozenset[str] = frozenset()
    #: For TENANT methods: whether an end user's token may call it too.
    end_user: bool = False

    @property
    def needs_token(self) -> bool:
        return self.binding in TOKEN_BINDINGS

    @property
    def data_bearing(self) -> bool:
        """Whether it reads or changes a tenant's or a person's data (so it needs that tenant's token)."""
        return self.needs_token


def public() -> MethodRule:
    return MethodRule(Binding.PUBLIC)


def operator() -> MethodRule:
    return MethodRule(Binding.OPERATOR)


def tenant(*scopes: str, end_user: bool = False) -> MethodRule:
    return MethodRule(Binding.TENANT, frozenset(scopes), end_user)


def subject(*scopes: str) -> MethodRule:
    return MethodRule(Binding.SUBJECT, frozenset(scopes))


def tenant_wide(*scopes: str) -> MethodRule:
    return MethodRule(Binding.TENANT_WIDE, frozenset(scopes))


#: Method name -> rule, for one gRPC service.
ServiceRules = Mapping[str, MethodRule]

_declared: dict[str, ServiceRules] = {}


def token_rules(service: ServiceDescriptor, rules: ServiceRules) -> ServiceRules:
    """A service's table, checked against its descriptor (every method has a rule, none is unknown) and
    registered for `likeness.grpc_user_tokens.UserTokenInterceptor`; its rules module calls this at import."""
    methods = {method.name for method in service.methods}
    if set(rules) != methods:
        missing, unknown = sorted(methods - set(rules)), sorted(set(rules) - methods)
        raise ValueError(f"{service.full_name}: methods without a token rule {missing}, unknown {unknown}")
    unscoped = sorted(name for name, rule in rules.items() if rule.needs_token and not rule.scopes)
    if unscoped:
        raise ValueError(f"{service.full_name}: methods that need a token name no scope: {unscoped}")
    _declared[service.full_name] = dict(rules)
    return _declared[service.full_name]


def declared() -> Mapping[str, ServiceRules]:
    return _declared


def refusal(rule: MethodRule, principal: Principal) -> str | None:
    """Why `principal` may not call a method with `rule` at all (None: it may), before any request field."""
    if rule.scopes and not rule.scopes & principal.scopes:
        return f"This token lacks a scope this call needs ({' or '.join(sorted(rule.scopes))})."
    if rule.binding is Binding.TENANT and principal.subject is not None and not rule.end_user:
        return "An end user's token cannot make this call."
    if rule.binding is Binding.SUBJECT and not principal.touches_subjects:
        return f"This call needs an end user's token or the {TENANT_WIDE_SCOPE} scope."
    if rule.binding is Binding.TENANT_WIDE and not principal.tenant_wide:
        return f"This call needs a token with the {TENANT_WIDE_SCOPE} scope and no subject."
    return None


# ---------------------------------------------------------------------------------------------- the call

_current: ContextVar[Principal | None] = ContextVar("likeness_user_principal", default=None)


def current_principal() -> Principal | None:
    """The verified principal of the call being handled (None outside a call that needs a token)."""
    return _current.get()


@contextlib.contextmanager
def acting_as(principal: Principal | None) -> Iterator[None]:
    """Handles what runs inside as a call with `principal`'s verified token (the interceptor's doing;
    tests that call a servicer directly say explicitly whose call it is)."""
    token = _current.set(principal)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # reset from another context: it dies with that context
            _current.reset(token)


async def require_principal(context: Context) -> Principal:
    principal = _current.get()
    if principal is None:
        # No verified token reached this method: refuse, whatever the reason (fail closed).
        await abort(context, grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", "A user token is required.")
    return principal


async def require_tenant(context: Context, tenant: str) -> Principal:
    """The call's principal, if the request's tenant is its token's (else PERMISSION_DENIED)."""
    principal = await require_principal(context)
    if tenant != principal.tenant:
        await abort(
            context, grpc.StatusCode.PERMISSION_DENIED, "wrong_tenant", "The token is not of this tenant."
        )
    return principal


async def require_subject(context: Context, tenant: str, subject_id: str) -> Principal:
    """The call's principal, if its token may touch this subject of this tenant (else PERMISSION_DENIED)."""
    principal = await require_tenant(context, tenant)
    if not principal.can_touch(subject_id):
        await abort(
            context,
            grpc.StatusCode.PERMISSION_DENIED,
            "wrong_subject",
            "The token may not touch this subject.",
        )
    return principal


async def require_tenant_wide(context: Context, tenant: str) -> Principal:
    """The call's principal, if it may touch every subject of the tenant (else PERMISSION_DENIED)."""
    principal = await require_tenant(context, tenant)
    if not principal.tenant_wide:
        await abort(
            context,
            grpc.StatusCode.PERMISSION_DENIED,
            "insufficient_scope",
            f"This call needs a token with the {TENANT_WIDE_SCOPE} scope and no subject.",
        )
    return principal


def may_touch(tenant: str, subject_id: str) -> bool:
    """Whether the call's token may see this subject of this tenant (for a subject read from a record:
    the caller answers NOT_FOUND when it may not, exactly as for a record that does not exist)."""
    principal = _current.get()
    return principal is not None and principal.tenant == tenant and principal.can_touch(subject_id)
