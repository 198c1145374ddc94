"""Keyed HMACs for identifiers that must not appear in clear (audit records, tenants' external refs)."""

from __future__ import annotations

import hashlib
import hmac


def keyed_hmac(secret: str, *parts: str) -> str:
    message = "\x1f".join(parts).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
