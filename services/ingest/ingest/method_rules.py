"""What each of ingest's gRPC methods asks of the end user's token (`likeness.method_access`).

Scopes are those of the gateway routes that call the method (any one admits): photos are listed to start
a training, to pick an instant render's photo, and for a data export too.
`likeness.grpc_user_tokens.UserTokenInterceptor` enforces the table; each method also checks its request's
tenant and subject against the token itself.
"""

from __future__ import annotations

from likeness.method_access import subject, token_rules
from likeness.v1 import ingest_pb2

SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"]

TOKEN_RULES = token_rules(
    SERVICE,
    {
        "SanitizePhoto": subject("photos:write"),
        "ListPhotos": subject("photos:read", "trainings:write", "renders:write", "subjects:export"),
        "ExportPhotos": subject("subjects:export"),
        "DeletePhoto": subject("photos:write"),
        "ExportFaceTemplates": subject("subjects:export"),
    },
)
