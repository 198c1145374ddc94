"""What each of the trainer's gRPC methods asks of the end user's token (`likeness.method_access`).

Scopes are those of the gateway routes that call the method (any one admits): a render request reads its
training, a data export lists them. `likeness.grpc_user_tokens.UserTokenInterceptor` enforces the table;
each method also checks its request's tenant, and the training's subject against the token (NOT_FOUND when
the token may not see it, as for a training that does not exist).
"""

from __future__ import annotations

from likeness.method_access import subject, tenant_wide, token_rules
from likeness.v1 import trainer_pb2

SERVICE = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"]

TOKEN_RULES = token_rules(
    SERVICE,
    {
        "SubmitTraining": subject("trainings:write"),
        "GetTraining": subject("trainings:read", "trainings:write", "renders:write"),
        "CancelTraining": subject("trainings:write"),
        "DeleteTraining": subject("trainings:write"),
        "WatchTraining": subject("trainings:read"),
        # Deleting a photo names the models trained on it (`photos:write`).
        "ListTrainings": subject("trainings:read", "subjects:export", "photos:write"),
        "ExportModels": subject("subjects:export"),
        # An operator's report of the tenant's quotas (`GET /v1/usage`).
        "GetTrainingUsage": tenant_wide("usage:read"),
    },
)
