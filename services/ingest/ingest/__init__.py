"""Likeness ingest: sanitizes uploaded photos."""
