"""Who may call the renderer's gRPC methods (its `serve` role): the peer identities (from their mTLS
certificates) per method.

`likeness.grpc_server.GrpcServer` enforces it; every other caller gets PERMISSION_DENIED and an audit
record. Only the gateway calls the renderer: `FetchImage` hands out decrypted headshots. Its GPU workers
take jobs from NATS and call nothing here.
"""

from __future__ import annotations

from likeness.grpc_callers import GATEWAY, caller_table
from likeness.v1 import renderer_pb2

SERVICE = renderer_pb2.DESCRIPTOR.services_by_name["RendererService"]

CALLERS = caller_table(
    SERVICE,
    {
        "SubmitRender": {GATEWAY},
        "GetRender": {GATEWAY},
        "FetchImage": {GATEWAY},
        "ListStyles": {GATEWAY},
        "PutTeamLook": {GATEWAY},
        "GetTeamLook": {GATEWAY},
        "ListTeamLooks": {GATEWAY},
        "DeleteTeamLook": {GATEWAY},
        "ListRenders": {GATEWAY},
        "RejectImage": {GATEWAY},
        # Per-item deletion: the gateway marks, has retention purge, then confirms (issue 16).
        "DeleteRender": {GATEWAY},
        # The tenant's quota usage (`GET /v1/usage`).
        "GetRenderUsage": {GATEWAY},
    },
)
