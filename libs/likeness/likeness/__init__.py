"""Likeness shared platform library: config, envelope crypto, keys, store, bus, telemetry, contracts."""
