"""The `likeness` command: the gateway's API through the typed client, verification and operator tools."""
