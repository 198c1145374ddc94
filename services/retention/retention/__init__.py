"""Likeness retention: subject lifecycle and crypto-shredding."""
