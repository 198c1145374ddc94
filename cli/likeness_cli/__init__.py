"""Likeness command line: dev stack, tiny model, tokens."""
