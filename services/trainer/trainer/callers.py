"""Who may call the trainer's gRPC methods (its `serve` role): the peer identities (from their mTLS
certificates) per method.

`likeness.grpc_server.GrpcServer` enforces it; every other caller gets PERMISSION_DENIED and an audit
record. Only the gateway calls the trainer; its GPU workers take jobs from NATS and call nothing here.
"""

from __future__ import annotations

from likeness.grpc_callers import GATEWAY, caller_table
from likeness.v1 import trainer_pb2

SERVICE = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"]

CALLERS = caller_table(
    SERVICE,
    {
        "SubmitTraining": {GATEWAY},
        "GetTraining": {GATEWAY},
        "CancelTraining": {GATEWAY},
        # Nothing calls it today (the gateway streams progress from NATS events): closed until one does.
        "WatchTraining": set(),
        "ListTrainings": {GATEWAY},
        # Hands out decrypted LoRAs and their face templates: the gateway's data export only.
        "ExportModels": {GATEWAY},
        # Per-item deletion: the gateway marks, has retention purge, then confirms (issue 16).
        "DeleteTraining": {GATEWAY},
        # The tenant's quota usage (`GET /v1/usage`).
        "GetTrainingUsage": {GATEWAY},
    },
)
