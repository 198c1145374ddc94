"""Route dependencies as `Annotated` aliases: who is calling (with the route's scope), the backends, and
the request's idempotency claim (rate limits and other limits are the edge's: `gateway.edge`).

A route asks for its scope by its principal's type, e.g. `principal: PhotosWrite`; the check runs before
the route touches anything, so a token without the scope learns nothing about the resource; right after
it, every id in the path is checked whole (`gateway.path_ids`: a malformed one is not found). Every route
that names or lists subjects also needs an end user's token or the `tenant:all` scope (a token without
`sub` has no authority over the tenant's people without it); only `TENANT_LEVEL_ROUTES` do not. A route
that takes `Idempotency-Key` lists `claim: Idempotent` after its principal (dependencies resolve in order).

The verified token is forwarded with every backend call the request makes (`likeness.grpc_user_tokens`):
each service verifies it again and checks tenant, scope and subject itself.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, cast

import nats.errors
import nats.js.errors
from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPBearer, SecurityScopes

from gateway import backends as backend_clients
from gateway.access import LiveSubjects
from gateway.auth import (
    EDGE_PRINCIPAL_KEY,
    TENANT_WIDE_SCOPE,
    Principal,
    TokenVerifier,
    bearer_credentials,
    insufficient_scope,
)
from gateway.caller import caller_of
from gateway.config import GatewaySettings
from gateway.errors import not_found, unavailable
from gateway.idempotency import (
    CLAIM_STATE_KEY,
    DOCUMENTATION,
    HEADER,
    KEY_SCHEMA,
    VALID_KEY,
    Claim,
    Replay,
    canonical_json_digest,
    check_fingerprint,
    drain_upload_digest,
    key_error,
)
from gateway.job_cache import JobCache
from gateway.middleware import is_streaming
from gateway.multipart_stream import form_boundary
from gateway.nats_link import NatsLink
from gateway.path_ids import refuse_malformed_path_ids
from gateway.uploads import deadline_of, upload_timeout
from likeness.grpc_user_tokens import forward_user_token
from likeness.ids import is_valid_id

#: Routes (by endpoint name) that draw from the upload buckets instead of the general ones.
UPLOAD_ROUTES = frozenset({"upload_photos"})
#: Seconds beyond a request's own deadline that its idempotency claim is held before another may take it.
LEASE_MARGIN_SECONDS = 30.0
PRINCIPAL_STATE_KEY = "likeness_principal"
#: Routes (by endpoint name) that touch no existing subject: a token without `sub` and without `tenant:all`
#: may use them (with their scope). Every other authenticated route needs one of the two.
TENANT_LEVEL_ROUTES = frozenset(
    {
        "create_subject",
        "list_styles",
        "get_retention_policy",
        "put_retention_policy",
        "list_looks",
        "get_look",
        "put_look",
        "delete_look",
        "get_consent_policy",
        "put_consent_policy",
    }
)


class BearerAuth(HTTPBearer):
    """The route's caller, from its bearer token (verified once per request, at the edge), with the
    route's scopes.

    The HTTP bearer scheme and the check in one dependency (FastAPI resolves each dependency of every
    request on its own, and this runs on every call): the OpenAPI schema still shows the `HTTPBearer`
    scheme with each route's scopes.
    """

    async def __call__(  # type: ignore[override]  # a Principal, not the credentials
        self, request: Request, security_scopes: SecurityScopes
    ) -> Principal:
        credentials = bearer_credentials(request.headers.get("authorization"))
        state = request.scope.setdefault("state", {})
        verified = state.get(EDGE_PRINCIPAL_KEY)
        if isinstance(verified, tuple) and verified[0] == credentials:
            # Verified at the edge (`gateway.edge`), which also spent the caller's rate-limit token.
            principal: Principal = verified[1]
        else:
            principal = await cast(TokenVerifier, request.app.state.verifier).verify(credentials)
        for scope in security_scopes.scopes:
            if scope not in principal.scopes:
                raise insufficient_scope(scope)
        route_name = getattr(request.scope.get("route"), "name", "")
        if not principal.touches_subjects and route_name not in TENANT_LEVEL_ROUTES:
            # Before anything is read: the answer is the same whether the id exists or not.
            raise insufficient_scope(TENANT_WIDE_SCOPE)
        # Every backend call of this request carries the token: the services verify it again.
        forward_user_token(credentials)
        # Authenticated and allowed the route: what the idempotency claim waits for.
        state[PRINCIPAL_STATE_KEY] = principal
        # Before the idempotency claim, the route and any backend: a malformed id is not found (full match).
        refuse_malformed_path_ids(request.method, request.path_params)
        return principal


authenticate = BearerAuth(
    scheme_name="HTTPBearer",
    auto_error=False,
    description="A JWT from your identity provider (development: `likeness token`).",
)


# The getters are `async def` although they do not await: FastAPI runs a plain `def` dependency in its
# thread pool, a thread hop per dependency per request.


def backends_of(request: Request) -> backend_clients.Backends:
    return cast(backend_clients.Backends, request.app.state.backends)


def live_subjects_of(request: Request) -> LiveSubjects:
    return cast(LiveSubjects, request.app.state.live_subjects)


def job_cache_of(request: Request) -> JobCache:
    return cast(JobCache, request.app.state.job_cache)


async def get_backends(request: Request) -> backend_clients.Backends:
    return backends_of(request)


async def get_live_subjects(request: Request) -> LiveSubjects:
    return live_subjects_of(request)


async def get_job_cache(request: Request) -> JobCache:
    return job_cache_of(request)


def get_nats(request: Request) -> NatsLink:
    return cast(NatsLink, request.app.state.nats)


async def nats_link(request: Request) -> NatsLink:
    return get_nats(request)


async def idempotency_claim(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description=DOCUMENTATION,
            examples=["3f0c1d2e-9b7a-4c65-8e21"],
            # Documented only: a key that breaks it answers 400 `invalid_idempotency_key`, not 422.
            json_schema_extra=KEY_SCHEMA,
        ),
    ] = None,
) -> Claim | None:
    """Takes the request's Idempotency-Key (if it has one), or answers from the stored record.

    Only for a request that may go on: authenticated with the route's scope (the principal dependency ran
    before) and, when its path names a subject, allowed to touch it (else the route's own 404, and no
    record): a refused request claims nothing. Records are the caller's own (`gateway.idempotency`)."""
    if idempotency_key is None:
        return None
    if not VALID_KEY.fullmatch(idempotency_key):
        raise key_error()
    principal = request.scope.get("state", {}).get(PRINCIPAL_STATE_KEY)
    if not isinstance(principal, Principal):
        raise RuntimeError("the idempotency claim must come after the route's principal")
    settings = cast(GatewaySettings, request.app.state.settings)
    store = get_nats(request).require_store()
    route = getattr(request.scope.get("route"), "path", request.url.path)
    streaming = is_streaming(request.method, request.url.path)
    fingerprint = None
    if not streaming:
        digest = canonical_json_digest(await request.body())
        fingerprint = store.fingerprint(principal.tenant, request.method, request.url.path, digest)
    deadline = settings.stream_timeout_seconds if streaming else settings.request_timeout_seconds
    subject = request.path_params.get("subject_id")
    if isinstance(subject, str) and not (is_valid_id(subject, "sub") and principal.can_touch(subject)):
        raise not_found()  # what the route answers, before anything is claimed for it
    if not isinstance(subject, str):
        subject = None
    try:
        claim = await store.claim(
            caller=caller_of(principal),
            key=idempotency_key,
            method=request.method,
            route=route,
            fingerprint=fingerprint,
            # An erasure's own answer names only the erasure: it is kept for retries after the purge.
            subject=subject if request.method != "DELETE" else None,
            lease_seconds=deadline + LEASE_MARGIN_SECONDS,
        )
    except Replay as replay:
        if fingerprint is None:
            boundary = form_boundary(request.headers.get("content-type")) or b"-"
            state = request.scope.setdefault("state", {})
            try:
                # Within the upload's own deadline; its size is cut by the edge like any upload's.
                async with asyncio.timeout_at(deadline_of(state, settings.stream_timeout_seconds)):
                    digest = await drain_upload_digest(store, request.stream(), boundary)
            except TimeoutError:
                raise upload_timeout(settings.stream_timeout_seconds) from None
            check_fingerprint(
                replay, store.fingerprint(principal.tenant, request.method, request.url.path, digest)
            )
        raise
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
        # NATS went away under us: the answer could not be made safe to retry, so none is given.
        raise unavailable("Idempotency records are unavailable right now; try again shortly.") from None
    request.scope.setdefault("state", {})[CLAIM_STATE_KEY] = claim
    return claim


Backends = Annotated[backend_clients.Backends, Depends(get_backends)]
Nats = Annotated[NatsLink, Depends(nats_link)]
Live = Annotated[LiveSubjects, Depends(get_live_subjects)]
Jobs = Annotated[JobCache, Depends(get_job_cache)]
Idempotent = Annotated[Claim | None, Depends(idempotency_claim)]
#: Any valid token, whatever its scopes.
CurrentPrincipal = Annotated[Principal, Security(authenticate)]
SubjectsRead = Annotated[Principal, Security(authenticate, scopes=["subjects:read"])]
SubjectsWrite = Annotated[Principal, Security(authenticate, scopes=["subjects:write"])]
SubjectsErase = Annotated[Principal, Security(authenticate, scopes=["subjects:erase"])]
PhotosRead = Annotated[Principal, Security(authenticate, scopes=["photos:read"])]
PhotosWrite = Annotated[Principal, Security(authenticate, scopes=["photos:write"])]
TrainingsRead = Annotated[Principal, Security(authenticate, scopes=["trainings:read"])]
TrainingsWrite = Annotated[Principal, Security(authenticate, scopes=["trainings:write"])]
RendersRead = Annotated[Principal, Security(authenticate, scopes=["renders:read"])]
RendersWrite = Annotated[Principal, Security(authenticate, scopes=["renders:write"])]
RetentionRead = Annotated[Principal, Security(authenticate, scopes=["retention:read"])]
RetentionWrite = Annotated[Principal, Security(authenticate, scopes=["retention:write"])]
LooksRead = Annotated[Principal, Security(authenticate, scopes=["looks:read"])]
LooksWrite = Annotated[Principal, Security(authenticate, scopes=["looks:write"])]
ConsentsRead = Annotated[Principal, Security(authenticate, scopes=["consents:read"])]
ConsentsWrite = Annotated[Principal, Security(authenticate, scopes=["consents:write"])]
#: The tenant's audit trail (`GET /v1/audit`): a tenant-wide token with this scope.
AuditRead = Annotated[Principal, Security(authenticate, scopes=["audit:read"])]
#: The tenant's GPU quotas and usage (`GET /v1/usage`): a tenant-wide token with this scope.
UsageRead = Annotated[Principal, Security(authenticate, scopes=["usage:read"])]
