"""Who may call retention's gRPC methods: the peer identities (from their mTLS certificates) per method.

`likeness.grpc_server.GrpcServer` enforces it; every other caller gets PERMISSION_DENIED and an audit
record. Today only the gateway calls retention, on behalf of an end user.
"""

from __future__ import annotations

from likeness.grpc_callers import GATEWAY, caller_table
from likeness.v1 import retention_pb2

SERVICE = retention_pb2.DESCRIPTOR.services_by_name["RetentionService"]

CALLERS = caller_table(
    SERVICE,
    {
        "OpenSubject": {GATEWAY},
        "GetSubject": {GATEWAY},
        "EraseSubject": {GATEWAY},
        "GetErasure": {GATEWAY},
        # Retention runs its own sweeps (reaper, orphan sweeps); nothing calls this today. An operator tool
        # that needs it gets an identity of its own, added here.
        "Sweep": set(),
        "GetRetentionPolicy": {GATEWAY},
        "SetRetentionPolicy": {GATEWAY},
        "GetErasureReceipt": {GATEWAY},
        "GetReceiptKeys": {GATEWAY},
        "ListSubjects": {GATEWAY},
        "GrantConsent": {GATEWAY},
        "ListConsents": {GATEWAY},
        "WithdrawConsent": {GATEWAY},
        "GetConsentPolicy": {GATEWAY},
        "SetConsentPolicy": {GATEWAY},
        # Per-item deletion: the gateway has retention purge an item once its owner has marked it (issue 16).
        # No service may: a compromised ingest, trainer or renderer cannot remove any version of anything.
        "PurgeItem": {GATEWAY},
        "RectifySubject": {GATEWAY},
        # The person's summary and the deletion dates of their export.
        "DescribeHoldings": {GATEWAY},
        # The person's processing log (their own token) and the tenant's audit trail (`audit:read`).
        "ListProcessingLog": {GATEWAY},
        "ListAuditTrail": {GATEWAY},
    },
)
