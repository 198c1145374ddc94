"""What each of the renderer's gRPC methods asks of the end user's token (`likeness.method_access`).

Scopes are those of the gateway routes that call the method (any one admits): images are fetched for a
download and for a data export. `likeness.grpc_user_tokens.UserTokenInterceptor` enforces the table; each
method also checks its request's tenant, and the render's subject against the token (NOT_FOUND when the
token may not see it, as for a render that does not exist).
"""

from __future__ import annotations

from likeness.method_access import public, subject, tenant, tenant_wide, token_rules
from likeness.v1 import renderer_pb2

SERVICE = renderer_pb2.DESCRIPTOR.services_by_name["RendererService"]

TOKEN_RULES = token_rules(
    SERVICE,
    {
        "SubmitRender": subject("renders:write"),
        "GetRender": subject("renders:read"),
        "FetchImage": subject("renders:read", "subjects:export"),
        "ListRenders": subject("renders:read", "subjects:export"),
        # The person (or their tenant) deletes one delivered image.
        "RejectImage": subject("renders:write"),
        "DeleteRender": subject("renders:write"),
        # An operator's report of the tenant's quotas (`GET /v1/usage`).
        "GetRenderUsage": tenant_wide("usage:read"),
        # The curated catalog: the same for everyone, nobody's data.
        "ListStyles": public(),
        # A tenant's looks: the tenant's settings, no person's data.
        "PutTeamLook": tenant("looks:write"),
        "GetTeamLook": tenant("looks:read", end_user=True),
        "ListTeamLooks": tenant("looks:read", end_user=True),
        "DeleteTeamLook": tenant("looks:write"),
    },
)
