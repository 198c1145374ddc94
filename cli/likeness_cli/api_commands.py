"""The gateway's API from the command line, through the typed client (`likeness_client`): every route of
`/v1` has a command (a test holds it so).

    likeness subjects create|list|get|export|erase      likeness photos upload|list
    likeness trainings start|list|get|watch|cancel      likeness renders create|list|get|watch|image|download
    likeness styles list                                likeness team-looks list|get|set|delete
    likeness retention policy get|set                   likeness erasures get|receipt|keys
    likeness gateway health|ready

Each module below adds its own group; `api_cli` says where the gateway and token come from and how
errors become exit codes.
"""

from __future__ import annotations

from likeness_cli import erasure_commands, gateway_commands, job_commands, subject_commands, tenant_commands
from likeness_cli.api_cli import ApiCommands, Commands


def register(commands: Commands) -> None:
    api = ApiCommands(commands)
    for module in (subject_commands, job_commands, tenant_commands, erasure_commands, gateway_commands):
        module.register(api)
