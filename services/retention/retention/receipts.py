"""Issuing erasure receipts: the facts of a completed erasure, signed with retention's Ed25519 key and kept
in the `receipts` bucket (which erasure never touches). Format and verification: `likeness.receipts`.
A receipt names the subject only as the keyed HMAC and the salted commitment, never by id.

The signing key comes from settings (`LIKENESS_RECEIPT_SIGNING_KEY`); its public half, with any earlier
ones still valid, is published as a JWK set (`public_keys()`), which `likeness receipt verify` checks
against.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nats.js.kv import KeyValue

from likeness import receipts
from likeness.bus import kv_get_bytes
from likeness.timeutil import Clock, from_timestamp, to_rfc3339
from likeness.v1 import retention_pb2
from retention.config import RetentionSettings
from retention.records import record_key

ISSUER = "likeness-retention"


def signing_key(settings: RetentionSettings) -> Ed25519PrivateKey:
    configured = settings.receipt_signing_key.get_secret_value().strip()
    if configured:
        return receipts.private_key_from_text(configured)
    return receipts.development_key(settings.hmac_secret.get_secret_value())


def published_keys(settings: RetentionSettings) -> list[Ed25519PublicKey]:
    current = signing_key(settings).public_key()
    previous = [
        key
        for text in settings.receipt_previous_public_keys
        for key in receipts.load_public_keys(text).values()
    ]
    return [current, *previous]


def _time(erasure: retention_pb2.Erasure, field: str) -> str:
    moment = from_timestamp(getattr(erasure, field))
    if moment is None:
        raise ValueError(f"the erasure has no {field} yet")
    return to_rfc3339(moment)


def receipt_facts(erasure: retention_pb2.Erasure, issued_at: str) -> dict[str, Any]:
    if erasure.status != retention_pb2.ErasureStatus.ERASURE_STATUS_COMPLETED:
        raise ValueError("a receipt is issued only for a completed erasure")
    if not erasure.subject_commitment:
        raise ValueError("the erasure binds no subject (no subject commitment)")
    return {
        "type": receipts.RECEIPT_TYPE,
        "version": receipts.RECEIPT_VERSION,
        "issuer": ISSUER,
        "erasure_id": erasure.id,
        "tenant": erasure.tenant,
        "subject_hmac": erasure.subject_hmac,
        "cause": erasure.cause,
        # Never the key name (it holds the subject id): the subject is bound by the salted commitment.
        "subject_commitment": erasure.subject_commitment,
        "requested_at": _time(erasure, "requested_at"),
        "key_destroyed_at": _time(erasure, "key_destroyed_at"),
        "purge_completed_at": _time(erasure, "completed_at"),
        "backups_expire_by": _time(erasure, "backups_expire_by"),
        "issued_at": issued_at,
        "objects_deleted": int(erasure.objects_deleted),
        "bytes_deleted": int(erasure.bytes_deleted),
        "records_deleted": int(erasure.records_deleted),
        "events_purged": int(erasure.events_purged),
    }


class ReceiptIssuer:
    def __init__(self, kv: KeyValue, settings: RetentionSettings, clock: Clock) -> None:
        self.kv = kv
        self.clock = clock
        self.settings = settings
        self._key = signing_key(settings)

    async def issue(self, erasure: retention_pb2.Erasure) -> bytes:
        """Signs and stores the receipt once (a later call returns the stored one)."""
        key = record_key(erasure.tenant, erasure.id)
        existing = await kv_get_bytes(self.kv, key)
        if existing is not None:
            return existing[0]
        facts = receipt_facts(erasure, to_rfc3339(self.clock.now()))
        document = receipts.sign_receipt(facts, self._key)
        raw = receipts.canonical_json(document)
        await self.kv.put(key, raw)
        return raw

    async def get(self, tenant: str, erasure_id: str) -> bytes | None:
        found = await kv_get_bytes(self.kv, record_key(tenant, erasure_id))
        return found[0] if found else None

    def public_keys(self) -> dict[str, list[dict[str, str]]]:
        return receipts.jwks(published_keys(self.settings))
