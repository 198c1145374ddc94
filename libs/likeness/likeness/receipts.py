"""Erasure receipts: a JSON record of one erasure, signed with Ed25519, verifiable by anyone with the
published public key (retention signs; `likeness receipt verify FILE` checks).

A receipt file is

    {"receipt": {...the facts...}, "signature": {"alg": "Ed25519", "kid": "<key id>", "value": "<b64url>"}}

and the signature covers the canonical JSON of `receipt` (keys sorted, no spaces, ASCII), so reformatting
the file keeps it valid and changing any value breaks it. The facts hold nothing personal: the subject
appears as a keyed HMAC (`subject_hmac`, which only retention's secret can recompute) and as a salted hash
(`subject_commitment` = SHA-256 of a per-erasure salt, the tenant and the subject id). The salt is handed
to whoever asked for the erasure, once, and never stored: with it the person checks that a receipt names
them (`names_subject`, `likeness receipt verify --subject ID --salt SALT`); without it, a receipt, the kept
erasure record or a backup of them cannot be linked to a subject id, even by someone holding a list of ids.
Version 1 receipts (issued before) named the destroyed Vault key, hence the subject id; they still verify.

Public keys are published as a JWK set (`{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": ..., "kid": ...}]}`)
so keys can rotate: old receipts name the key that signed them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from likeness.timeutil import from_rfc3339

RECEIPT_TYPE = "likeness.erasure_receipt"
RECEIPT_VERSION = 2
#: Versions this code verifies: 1 (named the Vault key, so the subject id) and the current one.
VERIFIED_VERSIONS = (1, RECEIPT_VERSION)
ALGORITHM = "Ed25519"
#: Domain separation of the subject commitment (a hash of nothing else can equal it).
COMMITMENT_CONTEXT = b"likeness.erasure_receipt.subject.v1"

#: Facts every receipt states, and their JSON types.
REQUIRED_FIELDS: dict[str, type] = {
    "type": str,
    "version": int,
    "issuer": str,
    "erasure_id": str,
    "tenant": str,
    "subject_hmac": str,
    "cause": str,
    "subject_commitment": str,
    "requested_at": str,
    "key_destroyed_at": str,
    "purge_completed_at": str,
    "backups_expire_by": str,
    "issued_at": str,
    "objects_deleted": int,
    "bytes_deleted": int,
    "records_deleted": int,
    "events_purged": int,
}
#: What a version 1 receipt held instead of the commitment.
_V1_FIELDS = {**{k: v for k, v in REQUIRED_FIELDS.items() if k != "subject_commitment"}, "key_name": str}
_TIMES = ("requested_at", "key_destroyed_at", "purge_completed_at", "backups_expire_by", "issued_at")


class ReceiptError(Exception):
    """The receipt is not valid; the message says why, in words for a person."""


# ----------------------------------------------------------------------------------------------- encoding


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReceiptError("not valid base64") from exc


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ReceiptError(f"the field {key!r} appears twice")
        seen[key] = value
    return seen


def _reject_constant(name: str) -> Any:
    raise ReceiptError(f"{name} is not a JSON number a receipt may hold")


def parse_strict_json(text: str | bytes) -> Any:
    """JSON without duplicate keys or NaN/Infinity (which canonical JSON could not reproduce)."""
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ReceiptError(f"not JSON ({exc.msg} at line {exc.lineno})") from exc


# ----------------------------------------------------------------------------------------------- keys


def public_raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    return hashlib.sha256(public_raw(public)).hexdigest()[:16]


def private_key_from_text(text: str) -> Ed25519PrivateKey:
    """A signing key given as base64 (standard or URL-safe) of its 32-byte seed."""
    seed = _unb64(text)
    if len(seed) != 32:
        raise ReceiptError("an Ed25519 signing key is 32 bytes (base64 of the seed)")
    return Ed25519PrivateKey.from_private_bytes(seed)


def private_key_text(private: Ed25519PrivateKey) -> str:
    return _b64url(private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def new_private_key_text() -> str:
    return private_key_text(Ed25519PrivateKey.generate())


def development_key(secret: str) -> Ed25519PrivateKey:
    """A signing key derived from a development secret (the dev stack's HMAC secret), so receipts of a dev
    stack verify across restarts without configuring a key. Production settings require a real key."""
    seed = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"likeness", info=b"erasure receipt signing key"
    ).derive(secret.encode())
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_jwk(public: Ed25519PublicKey) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": key_id(public),
        "x": _b64url(public_raw(public)),
    }


def jwks(publics: Iterable[Ed25519PublicKey]) -> dict[str, list[dict[str, str]]]:
    return {"keys": [public_jwk(public) for public in publics]}


def _jwk_key(jwk: Mapping[str, Any]) -> Ed25519PublicKey:
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
        raise ReceiptError("a public key must be an Ed25519 JWK (kty OKP, crv Ed25519, x)")
    raw = _unb64(str(jwk["x"]))
    if len(raw) != 32:
        raise ReceiptError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_public_keys(text: str | bytes) -> dict[str, Ed25519PublicKey]:
    """Public keys by key id, from a JWK set, a single JWK, or a bare base64 key."""
    stripped = text.strip()
    if isinstance(stripped, bytes):
        stripped = stripped.decode("ascii", errors="replace")
    if not stripped.startswith("{"):
        raw = _unb64(stripped)
        if len(raw) != 32:
            raise ReceiptError("an Ed25519 public key is 32 bytes")
        public = Ed25519PublicKey.from_public_bytes(raw)
        return {key_id(public): public}
    document = parse_strict_json(stripped)
    entries = document.get("keys") if isinstance(document, dict) and "keys" in document else [document]
    if not isinstance(entries, list) or not entries:
        raise ReceiptError("the key file holds no keys")
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ReceiptError("a key entry must be a JSON object")
        public = _jwk_key(entry)
        keys[key_id(public)] = public
    return keys


# ----------------------------------------------------------------------------------------------- sign/verify


def sign_receipt(facts: Mapping[str, Any], private: Ed25519PrivateKey) -> dict[str, Any]:
    check_facts(facts)
    signature = private.sign(canonical_json(dict(facts)))
    return {
        "receipt": dict(facts),
        "signature": {"alg": ALGORITHM, "kid": key_id(private.public_key()), "value": _b64url(signature)},
    }


def check_facts(facts: Mapping[str, Any]) -> dict[str, datetime]:
    """The receipt's own consistency: every field present with its type, times in a possible order."""
    if facts.get("type") != RECEIPT_TYPE or facts.get("version") not in VERIFIED_VERSIONS:
        raise ReceiptError(f"not an erasure receipt of version {' or '.join(map(str, VERIFIED_VERSIONS))}")
    fields = _V1_FIELDS if facts["version"] == 1 else REQUIRED_FIELDS
    for name, kind in fields.items():
        value = facts.get(name)
        # bool is an int in Python, never in a receipt.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ReceiptError(f"the field {name!r} is missing or not a {kind.__name__}")
    try:
        times = {name: from_rfc3339(str(facts[name])) for name in _TIMES}
    except ValueError as exc:
        raise ReceiptError("a time in the receipt is not an RFC 3339 UTC timestamp") from exc
    if not times["requested_at"] <= times["key_destroyed_at"] <= times["purge_completed_at"]:
        raise ReceiptError("the times are out of order: request, key destroyed, purge completed")
    if times["backups_expire_by"] < times["key_destroyed_at"]:
        raise ReceiptError("backups cannot expire before the key was destroyed")
    if (
        min(int(facts[n]) for n in ("objects_deleted", "bytes_deleted", "records_deleted", "events_purged"))
        < 0
    ):
        raise ReceiptError("counts cannot be negative")
    return times


def verify_receipt(document: Any, keys: Mapping[str, Ed25519PublicKey]) -> dict[str, Any]:
    """The receipt's facts if its signature is valid under one of `keys`; raises ReceiptError otherwise."""
    if not isinstance(document, dict) or set(document) != {"receipt", "signature"}:
        raise ReceiptError('a receipt file holds exactly "receipt" and "signature"')
    facts, signature = document["receipt"], document["signature"]
    if not isinstance(facts, dict) or not isinstance(signature, dict):
        raise ReceiptError('"receipt" and "signature" must be JSON objects')
    if signature.get("alg") != ALGORITHM:
        raise ReceiptError(f"unsupported signature algorithm {signature.get('alg')!r}")
    kid, value = signature.get("kid"), signature.get("value")
    if not isinstance(kid, str) or not isinstance(value, str):
        raise ReceiptError("the signature names no key or holds no value")
    public = keys.get(kid)
    if public is None:
        raise ReceiptError(f"signed by key {kid!r}, which is not among the published keys")
    try:
        public.verify(_unb64(value), canonical_json(facts))
    except InvalidSignature as exc:
        raise ReceiptError(
            "the signature does not match: the receipt was altered or not signed by us"
        ) from exc
    check_facts(facts)
    return facts


def verify_receipt_text(text: str | bytes, keys: Mapping[str, Ed25519PublicKey]) -> dict[str, Any]:
    return verify_receipt(parse_strict_json(text), keys)


# ----------------------------------------------------------------------------------------------- the subject


def new_receipt_salt() -> str:
    """A fresh salt for one erasure's subject commitment (192 random bits, URL-safe text)."""
    return secrets.token_urlsafe(24)


def subject_commitment(salt: str, tenant: str, subject_id: str) -> str:
    """SHA-256 (hex) binding one subject of one tenant under `salt`: what a receipt states of the person.

    Unlike the keyed HMAC, anyone holding the salt can recompute it; unlike a plain hash of the id, nobody
    without the salt can test a guessed (or leaked) subject id against it.
    """
    if not salt:
        raise ValueError("a subject commitment needs a salt")
    digest = hashlib.sha256(COMMITMENT_CONTEXT)
    for part in (salt, tenant, subject_id):
        encoded = part.encode()
        digest.update(len(encoded).to_bytes(4, "big") + encoded)
    return digest.hexdigest()


def names_subject(facts: Mapping[str, Any], subject_id: str, salt: str) -> bool:
    """Whether verified receipt facts name this subject (the salt is the one given with the erasure)."""
    stated = facts.get("subject_commitment")
    if not isinstance(stated, str) or not stated:
        return False
    expected = subject_commitment(salt, str(facts["tenant"]), subject_id)
    return hmac.compare_digest(stated.encode(), expected.encode())


def describe(facts: Mapping[str, Any]) -> str:
    """The verified facts in words."""
    destroyed = f"  ({facts['key_name']})" if "key_name" in facts else ""
    subject = (
        [f"  subject (salted hash) {facts['subject_commitment']}"] if "subject_commitment" in facts else []
    )
    return "\n".join(
        [
            f"erasure {facts['erasure_id']} (tenant {facts['tenant']}, cause {facts['cause']})",
            f"  subject (keyed HMAC)  {facts['subject_hmac']}",
            *subject,
            f"  requested             {facts['requested_at']}",
            f"  key destroyed         {facts['key_destroyed_at']}{destroyed}",
            f"  purge completed       {facts['purge_completed_at']}",
            f"  deleted               {facts['objects_deleted']} objects, {facts['bytes_deleted']} bytes, "
            f"{facts['records_deleted']} records, {facts['events_purged']} events",
            f"  backups expire by     {facts['backups_expire_by']}",
            f"  issued                {facts['issued_at']} by {facts['issuer']}",
        ]
    )
