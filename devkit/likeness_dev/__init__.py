"""The Likeness dev kit: the local dev stack, sample photos, leak scans, the journey, the demo and the
pytest plugin. Never a dependency of a service, the client or the `likeness` command."""
