"""Who may call ingest's gRPC methods: the peer identities (from their mTLS certificates) per method.

`likeness.grpc_server.GrpcServer` enforces it; every other caller gets PERMISSION_DENIED and an audit
record. Only the gateway calls ingest, on behalf of an end user: `ExportPhotos` hands out decrypted crops.
"""

from __future__ import annotations

from likeness.grpc_callers import GATEWAY, caller_table
from likeness.v1 import ingest_pb2

SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"]

CALLERS = caller_table(
    SERVICE,
    {
        "SanitizePhoto": {GATEWAY},
        "ListPhotos": {GATEWAY},
        "ExportPhotos": {GATEWAY},
        # Per-item deletion: the gateway marks, has retention purge, then confirms (issue 16).
        "DeletePhoto": {GATEWAY},
        "ExportFaceTemplates": {GATEWAY},
    },
)
