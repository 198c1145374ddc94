"""Team looks: a tenant's pinned style, background and seed policy, so a team's headshots match."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from gateway import access, convert, schemas
from gateway.contract import answers
from gateway.deps import Backends, LooksRead, LooksWrite
from gateway.errors import ApiError
from likeness.v1 import renderer_pb2

router = APIRouter(prefix="/v1/team-looks", tags=["team looks"])

LookId = Annotated[
    str,
    Path(
        max_length=40,
        description="The tenant's own id: lower-case letters, digits and inner dashes",
        examples=["sales-emea"],
        # Enforced (whole) by `gateway.path_ids` right after authentication, not as a 422: a malformed id is
        # not found (404), or refused as a name to create (400 `invalid_team_look_id`).
        json_schema_extra={"pattern": schemas.LOOK_ID_PATTERN},
    ),
]
_SEED_POLICIES = {"fixed": renderer_pb2.SEED_POLICY_FIXED, "per_render": renderer_pb2.SEED_POLICY_PER_RENDER}


def _tenant_only(subject: str | None) -> None:
    if subject is not None:
        raise ApiError(403, "insufficient_scope", "An end-user token cannot change team looks.")


@router.get(
    "",
    summary="List the tenant's team looks",
    description="Scope `looks:read`.",
    responses=answers("team_looks_unavailable"),
)
async def list_looks(principal: LooksRead, backends: Backends) -> schemas.TeamLookList:
    request = renderer_pb2.ListTeamLooksRequest(tenant=principal.tenant)
    response = await backends.renderer.ListTeamLooks(request, timeout=backends.timeout)
    return schemas.TeamLookList(looks=[convert.team_look(look) for look in response.looks])


@router.get(
    "/{look_id}",
    summary="Read a team look",
    description="Scope `looks:read`.",
    responses=answers("not_found", "team_looks_unavailable"),
)
async def get_look(look_id: LookId, principal: LooksRead, backends: Backends) -> schemas.TeamLook:
    request = renderer_pb2.GetTeamLookRequest(tenant=principal.tenant, look_id=look_id)
    response = await access.hide_missing(backends.renderer.GetTeamLook(request, timeout=backends.timeout))
    return convert.team_look(response.look)


@router.put(
    "/{look_id}",
    summary="Create or replace a team look (catalog style, background, optional outfit and lighting only)",
    description="Scope `looks:write`; not with an end user's token. 400 `unknown_style`, "
    "`unknown_background`, `invalid_look`... when the look cannot be built from the catalog.",
    responses=answers(
        "invalid_team_look_id",
        "unknown_style",
        "unknown_background",
        "unknown_catalog_id",
        "invalid_team_look",
        "team_looks_unavailable",
    ),
)
async def put_look(
    look_id: LookId, body: schemas.TeamLookIn, principal: LooksWrite, backends: Backends
) -> schemas.TeamLook:
    _tenant_only(principal.subject)
    request = renderer_pb2.PutTeamLookRequest(
        tenant=principal.tenant,
        look_id=look_id,
        name=body.name,
        style=body.style,
        background=body.background,
        seed_policy=_SEED_POLICIES[body.seed_policy],
        seed=body.seed,
        outfit=body.outfit or "",
        lighting=body.lighting or "",
    )
    response = await backends.renderer.PutTeamLook(request, timeout=backends.timeout)
    return convert.team_look(response.look)


@router.delete(
    "/{look_id}",
    status_code=204,
    summary="Delete a team look (renders made with it keep it on record)",
    description="Scope `looks:write`; not with an end user's token.",
    response_class=Response,
    responses=answers("not_found", "team_looks_unavailable"),
)
async def delete_look(look_id: LookId, principal: LooksWrite, backends: Backends) -> Response:
    _tenant_only(principal.subject)
    request = renderer_pb2.DeleteTeamLookRequest(tenant=principal.tenant, look_id=look_id)
    await access.hide_missing(backends.renderer.DeleteTeamLook(request, timeout=backends.timeout))
    return Response(status_code=204)
