"""Likeness shared platform library: config, envelope crypto, Vault keys, S3 store, bus, telemetry, contracts."""
