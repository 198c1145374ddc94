"""Likeness gateway: the public REST API."""
