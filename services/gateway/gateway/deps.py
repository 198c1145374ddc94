"""Route dependencies as `Annotated` aliases: who is calling (with the route's scope), and the backends.

A route asks for its scope by its principal's type, e.g. `principal: PhotosWrite`; the check runs before
the route touches anything, so a token without the scope learns nothing about the resource.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from gateway import backends as backend_clients
from gateway.auth import Principal, TokenVerifier, insufficient_scope, unauthenticated

bearer = HTTPBearer(
    auto_error=False,
    description="A JWT from your identity provider (development: `likeness token`).",
)


async def authenticate(
    security_scopes: SecurityScopes,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None:
        raise unauthenticated("A bearer token is required.", token_given=False)
    verifier = cast(TokenVerifier, request.app.state.verifier)
    principal = await verifier.verify(credentials.credentials)
    for scope in security_scopes.scopes:
        if scope not in principal.scopes:
            raise insufficient_scope(scope)
    return principal


def get_backends(request: Request) -> backend_clients.Backends:
    return cast(backend_clients.Backends, request.app.state.backends)


Backends = Annotated[backend_clients.Backends, Depends(get_backends)]
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
