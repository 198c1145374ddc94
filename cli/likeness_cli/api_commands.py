"""The gateway's API from the command line, through the typed client (`likeness_client`): every route of
`/v1` has a command (a test holds it so).

    likeness subjects create|list|get|export|erase      likeness photos upload|list
    likeness trainings start|list|get|watch|cancel      likeness renders create|list|get|watch|image|download
                                                        likeness renders reject
    likeness styles list                                likeness team-looks list|get|set|delete
    likeness retention policy get|set                   likeness erasures get|receipt|keys
    likeness consents grant|list|withdraw|policy get|set
    likeness subjects log ID                            likeness audit trail
    likeness usage
    likeness gateway health|ready

Each module below adds its own group; `api_cli` says where the gateway and token come from and how
errors become exit codes.
"""

from __future__ import annotations

from likeness_cli import (
    audit_commands,
    consent_commands,
    erasure_commands,
    gateway_commands,
    job_commands,
    subject_commands,
    tenant_commands,
    usage_commands,
)
from likeness_cli.api_cli import ApiCommands, Commands


def register(commands: Commands) -> None:
    api = ApiCommands(commands)
    modules = (
        subject_commands,
        job_commands,
        tenant_commands,
        consent_commands,
        erasure_commands,
        audit_commands,
        usage_commands,
        gateway_commands,
    )
    for module in modules:
        module.register(api)
