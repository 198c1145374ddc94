"""`Idempotency-Key`: a retried POST (or subject DELETE) gets the first answer again and changes nothing.

Records live in the gateway's own NATS KV bucket (entries expire after `idempotency_ttl_seconds`, 24 h):

| key | value |
|---|---|
| `r.<id>` | the record: `in_flight` (with a lease) or `done`, the request fingerprint, the sealed answer |
| `s.<tenant>.<subject>.<id>` | index: the record belongs to this subject (dropped with it on erasure) |

`<id>` is an HMAC (keyed with the gateway's own `LIKENESS_IDEMPOTENCY_SECRET`) of tenant, caller, key,
method and route template, so the bucket names neither the key, the caller nor the request. The caller is
the token's (`gateway.caller`: its end user's `sub`, else its client): the same key sent by another caller
of the tenant is another record, so one caller's answer (a 404 included) is never replayed to another.
The fingerprint is an HMAC of the path and the body (for photo uploads, of the files' bytes, hashed while
they stream). The response (status, `Location`, body) is sealed with AES-256-GCM under a key derived from
the secret, the tenant, the caller and the Idempotency-Key itself: only that caller, holding the key, can
have it replayed, and the bucket holds nothing personal in clear.

A key is claimed only once the request is authenticated, holds the route's scope and may touch the
subject its path names (`gateway.deps.idempotency_claim`): a refused request claims nothing.

A response is stored when the route answered it (2xx or 4xx); refusals before the route ran (401, 403,
429) and failures (5xx, timeouts, a client gone mid-request) release the key, so a retry runs again.
Records of a subject are purged when `subject.erased` arrives, except the erasure's own answer (it names
only the erasure), so a retried DELETE still gets its 202.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import nats.js.errors
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nats.js.kv import KeyValue
from python_multipart.exceptions import MultipartParseError
from starlette.datastructures import MutableHeaders

from gateway.caller import Caller
from gateway.errors import ApiError, unavailable
from gateway.multipart_stream import Event, FileData, FileEnded, FileStarted, MultipartEvents
from likeness.bus import kv_forget, kv_keys

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
#: Where a route's claim waits for the request middleware (a key of the ASGI scope's "state").
CLAIM_STATE_KEY = "likeness_idempotency_claim"
#: 1..255 printable ASCII characters (space included), as the header's documentation says.
VALID_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")
#: Answers that are not kept: the route did not run (401, 403, 429) or did not finish (5xx).
_NOT_STORED = frozenset({401, 403, 408, 429})
#: Response headers worth replaying (others, such as the request id, belong to each attempt).
_REPLAYED_HEADERS = ("content-type", "location")
IN_PROGRESS_RETRY_AFTER = 1
#: What the schema promises of a key: printable ASCII with no space at either end (HTTP drops those), so
#: every key that matches it arrives as sent and is accepted (`VALID_KEY` is the check applied).
KEY_SCHEMA = {"minLength": 1, "maxLength": 255, "pattern": r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$"}

DOCUMENTATION = (
    "Makes a retry safe: a request repeated with the same key (1..255 printable ASCII characters, e.g. a "
    "UUID) within 24 hours gets the first answer again (header `Idempotent-Replayed: true`) and creates "
    "nothing new. The same key with another request answers 422 `idempotency_key_reused`; while the "
    "first is still running, 409 `idempotency_in_progress` with `Retry-After`."
)


def key_error() -> ApiError:
    return ApiError(
        400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 printable ASCII characters."
    )


def in_progress() -> ApiError:
    return ApiError(
        409,
        "idempotency_in_progress",
        "A request with this Idempotency-Key is still being answered; retry shortly.",
        headers={"Retry-After": str(IN_PROGRESS_RETRY_AFTER)},
    )


def reused() -> ApiError:
    return ApiError(
        422,
        "idempotency_key_reused",
        "This Idempotency-Key was used with a different request; use a new key for a new request.",
    )


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class Replay(Exception):
    """The request was answered before: send this stored response again.

    `fingerprint` is the first request's: a caller that could not fingerprint the retry before reading its
    body (an upload) compares it with `check_fingerprint` once it has.
    """

    def __init__(self, response: StoredResponse, fingerprint: str | None) -> None:
        super().__init__("replay")
        self.response = response
        self.fingerprint = fingerprint


def canonical_json_digest(body: bytes) -> bytes:
    """A digest of a JSON body that ignores key order and whitespace (other bodies: of their bytes)."""
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return hashlib.sha256(b"raw\x00" + body).digest()
    canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(b"json\x00" + canonical.encode()).digest()


class IdempotencyStore:
    def __init__(self, kv: KeyValue, secret: bytes) -> None:
        self.kv = kv
        self._secret = secret

    def _mac(self, *parts: str | bytes) -> str:
        message = b"\x1f".join(part.encode() if isinstance(part, str) else part for part in parts)
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def record_id(self, caller: Caller, key: str, method: str, route: str) -> str:
        return self._mac("idempotency-record", caller.tenant, caller.name, key, method, route)

    def fingerprint(self, tenant: str, method: str, path: str, body_digest: bytes) -> str:
        return self._mac("idempotency-request", tenant, method, path, body_digest)

    def digest(self) -> hmac.HMAC:
        """A keyed running hash (for an upload's files as they stream)."""
        return hmac.new(self._secret, b"idempotency-upload", hashlib.sha256)

    def _aead(self, caller: Caller, key: str) -> AESGCM:
        info = b"\x1f".join(
            (b"likeness-idempotency-v2", caller.tenant.encode(), caller.name.encode(), key.encode())
        )
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(self._secret)
        return AESGCM(derived)

    async def claim(
        self,
        *,
        caller: Caller,
        key: str,
        method: str,
        route: str,
        fingerprint: str | None,
        subject: str | None,
        lease_seconds: float,
    ) -> Claim:
        """Takes the key for this request, or raises `Replay`, `in_progress()` or `reused()`.

        `fingerprint` None: not known yet (an upload is hashed while it streams); the stored one is then
        compared by the caller with `check_fingerprint` once the retry's body has been read.
        """
        tenant = caller.tenant
        record_id = self.record_id(caller, key, method, route)
        record_key = f"r.{record_id}"
        aead = self._aead(caller, key)
        for _ in range(5):
            fresh = {"state": "in_flight", "fp": fingerprint, "lease_until": time.time() + lease_seconds}
            try:
                revision = await self.kv.create(record_key, json.dumps(fresh).encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                pass
            else:
                claim = Claim(self, tenant, record_id, int(revision), aead, fingerprint, subject)
                await claim.index()
                return claim
            try:
                entry = await self.kv.get(record_key)
            except nats.js.errors.KeyNotFoundError:
                continue  # released or expired in between: try to take it again
            if not entry.value:
                continue
            record = json.loads(entry.value)
            stored_fp = record.get("fp")
            if fingerprint is not None and stored_fp is not None and stored_fp != fingerprint:
                raise reused()
            if record.get("state") == "done":
                raise Replay(_open(aead, record_key, record), stored_fp)
            if float(record.get("lease_until", 0)) > time.time():
                raise in_progress()
            # The request that held it never finished (its replica died): this one takes over.
            try:
                revision = await self.kv.update(
                    record_key, json.dumps(fresh).encode(), last=int(entry.revision or 0)
                )
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            claim = Claim(self, tenant, record_id, int(revision), aead, fingerprint, subject)
            await claim.index()
            return claim
        raise in_progress()

    async def purge_subject(self, tenant: str, subject_id: str) -> int:
        """Drops every record indexed under the subject (on erasure)."""
        removed = 0
        for index_key in await kv_keys(self.kv, f"s.{tenant}.{subject_id}."):
            record_id = index_key.rsplit(".", 1)[-1]
            await self.kv.purge(f"r.{record_id}")
            removed += 1
        # The index keys name the subject: forgotten without the purge marker that would keep the name.
        await kv_forget(self.kv, f"s.{tenant}.{subject_id}.>")
        return removed


def _open(aead: AESGCM, record_key: str, record: dict[str, Any]) -> StoredResponse:
    sealed = base64.b64decode(record["response"])
    try:
        plain = aead.decrypt(sealed[:12], sealed[12:], record_key.encode())
    except InvalidTag:
        # Only a different key could lead here (an HMAC collision); never answer with someone else's data.
        raise reused() from None
    stored = json.loads(plain)
    return StoredResponse(
        status=int(stored["status"]),
        headers={str(name): str(value) for name, value in stored["headers"].items()},
        body=base64.b64decode(stored["body"]),
    )


def check_fingerprint(replay: Replay, fingerprint: str) -> None:
    """For requests whose fingerprint is known only after reading the body (uploads)."""
    if replay.fingerprint is not None and replay.fingerprint != fingerprint:
        raise reused()


@dataclass
class Claim:
    """This request holds the key: its response is stored (or the key released) when it is answered."""

    store: IdempotencyStore
    tenant: str
    record_id: str
    revision: int
    aead: AESGCM
    fingerprint: str | None
    #: The subject the request concerns, if any: its records go when the subject is erased.
    subject: str | None
    pending: bool = True
    _status: int = 0
    _headers: dict[str, str] = field(default_factory=dict)
    _indexed: str | None = None

    @property
    def record_key(self) -> str:
        return f"r.{self.record_id}"

    async def index(self) -> None:
        if self.subject is not None and self._indexed != self.subject:
            await self.store.kv.put(f"s.{self.tenant}.{self.subject}.{self.record_id}", b"1")
            self._indexed = self.subject

    def begin_response(self, status: int, headers: MutableHeaders) -> None:
        self._status = status
        self._headers = {name: headers[name] for name in _REPLAYED_HEADERS if name in headers}

    async def finish(self, body: bytes) -> None:
        if self._status >= 500 or self._status in _NOT_STORED:
            await self.release()
            return
        self.pending = False
        stored = {
            "status": self._status,
            "headers": self._headers,
            "body": base64.b64encode(body).decode(),
        }
        nonce = os.urandom(12)
        sealed = nonce + self.aead.encrypt(nonce, json.dumps(stored).encode(), self.record_key.encode())
        record = {"state": "done", "fp": self.fingerprint, "response": base64.b64encode(sealed).decode()}
        try:
            await self.index()
            await self.store.kv.update(self.record_key, json.dumps(record).encode(), last=self.revision)
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
            # The answer still goes out; a retry then finds the lease and, after it, runs again.
            log.warning("could not store an idempotent response")

    async def release(self) -> None:
        if not self.pending:
            return
        self.pending = False
        try:
            await self.store.kv.delete(self.record_key, last=self.revision)
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
            log.warning("could not release an idempotency key; it frees itself when its lease ends")


async def drain_upload_digest(store: IdempotencyStore, body: AsyncIterator[bytes], boundary: bytes) -> bytes:
    """The keyed digest of an upload's files, read (and dropped) chunk by chunk: for a retried upload.

    Bounded like the upload itself: `body` is the request's stream, which the edge cuts at the upload's
    body limit (413), and the caller runs this within the upload's deadline (408)."""
    digest = store.digest()
    events = MultipartEvents(boundary)
    try:
        async for chunk in body:
            for event in events.feed(chunk):
                update_upload_digest(digest, event)
            if events.finished:
                break
    except MultipartParseError:
        digest.update(b"\x00malformed")  # not the upload that was answered: never equal to its digest
    return digest.digest()


def update_upload_digest(digest: hmac.HMAC, event: Event) -> None:
    if isinstance(event, FileStarted):
        digest.update(b"\x00file-start")
    elif isinstance(event, FileData):
        digest.update(event.data)
    elif isinstance(event, FileEnded):
        digest.update(b"\x00file-end")


def unavailable_store() -> ApiError:
    return unavailable("Idempotency records are unavailable right now; try again shortly.")
