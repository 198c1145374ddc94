"""What each of retention's gRPC methods asks of the end user's token (`likeness.method_access`).

Scopes are those of the gateway routes that call the method (any one admits). Every method reading the
subject's record is called on the way to every subject route (the gateway checks the subject is live
first), hence the long list of `GetSubject`. `likeness.grpc_user_tokens.UserTokenInterceptor` enforces the
table; each method also checks its request's tenant and subject against the token itself.
"""

from __future__ import annotations

from likeness.method_access import operator, public, subject, tenant, tenant_wide, token_rules
from likeness.v1 import retention_pb2

SERVICE = retention_pb2.DESCRIPTOR.services_by_name["RetentionService"]

#: Every scope of a route that touches one subject (each first reads the subject's record).
SUBJECT_ROUTE_SCOPES = (
    "subjects:read",
    "subjects:erase",
    "subjects:export",
    "photos:read",
    "photos:write",
    "trainings:read",
    "trainings:write",
    "renders:read",
    "renders:write",
    "consents:read",
    "consents:write",
    "subjects:write",
)

TOKEN_RULES = token_rules(
    SERVICE,
    {
        # Opens a new person: touches no existing subject, so no tenant-wide grant is needed.
        "OpenSubject": tenant("subjects:write"),
        "GetSubject": subject(*SUBJECT_ROUTE_SCOPES),
        "EraseSubject": subject("subjects:erase"),
        # The subject comes from the erasure record: checked there (NOT_FOUND when the token may not see it).
        "GetErasure": subject("subjects:erase"),
        "GetErasureReceipt": subject("subjects:erase"),
        # Runs what retention's own schedule made due, under retention's identity; answers counts only.
        "Sweep": operator(),
        "GetRetentionPolicy": tenant("retention:read", "retention:write"),
        "SetRetentionPolicy": tenant("retention:write"),
        # Public keys: anyone holding a receipt may verify it.
        "GetReceiptKeys": public(),
        "ListSubjects": tenant_wide("subjects:read"),
        # The person's own token, or a tenant-wide one (which the tenant's consent policy may refuse).
        "GrantConsent": subject("consents:write"),
        "ListConsents": subject("consents:read", "subjects:export"),
        "WithdrawConsent": subject("consents:write"),
        "GetConsentPolicy": tenant("consents:read", "consents:write"),
        "SetConsentPolicy": tenant("consents:write"),
        # Per-item deletion: the scope of the route deleting that kind (checked against the kind there).
        "PurgeItem": subject("photos:write", "trainings:write", "renders:write"),
        "RectifySubject": subject("subjects:write"),
        # The summary (`subjects:read`) and the export's deletion dates (`subjects:export`): the person's own
        # token or a tenant-level one.
        "DescribeHoldings": subject("subjects:read", "subjects:export"),
        # The person's processing log: their own token (the method refuses a tenant-level one unless it
        # may export the subject: the export holds the log). The tenant's whole trail: `audit:read`.
        "ListProcessingLog": subject("subjects:read", "subjects:export"),
        "ListAuditTrail": tenant_wide("audit:read"),
    },
)
