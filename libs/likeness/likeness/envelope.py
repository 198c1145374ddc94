"""Envelope encryption: the at-rest format of every object of a person (photo, model, rendered image).

Pure, synchronous and streaming: this module knows nothing about Vault or S3. A caller gets a 32-byte
data key (plaintext + Vault-wrapped ciphertext) per object, seals the object with it, and stores the
wrapped key inside the envelope header. To open, the caller reads the header, unwraps
``header.wrapped_key`` via Vault, then streams the rest through :func:`open_stream`.

Binary layout, version 1 (all integers big-endian)::

    envelope  = preamble || body || chunk_0 || ... || chunk_n
    preamble  = "LKNS" (4 bytes magic) || format_version u8 (= 1) || body_length u32
    body      = str(key_name)                       the Vault Transit key name
             || key_version u32                     Vault key version (>= 1)
             || str(wrapped_key)                    "vault:vN:..." ciphertext of the data key
             || nonce_base (8 bytes, random per object)
             || chunk_size u32                      plaintext bytes per chunk, MIN..MAX_CHUNK_SIZE
             || str(tenant) || str(subject) || str(object_key) || str(kind)   the ObjectContext
             || key_commitment (32 bytes)
    str(s)    = u16 byte length || UTF-8 bytes (non-empty)

``header bytes`` means preamble || body. ``body_length`` is at most MAX_HEADER_BODY_SIZE (64 KiB) and
the body must be consumed exactly; every field is validated on parse so a hostile blob cannot trigger
large allocations (chunk reads are bounded by MAX_CHUNK_SIZE + 16).

    key_commitment = HMAC-SHA256(data_key, "likeness-envelope-commit" || header bytes before the
                                 commitment, i.e. preamble || body[:-32])

AES-GCM is not key-committing; the commitment lets a wrong data key be reported as :class:`WrongKey`
before any chunk is touched. Because it also covers every header field, tampering with the header
body (including the context) surfaces as :class:`WrongKey` too: from the reader's side, "this key does
not belong to this header".

Each chunk is the AES-256-GCM encryption of up to ``chunk_size`` plaintext bytes followed by its 16-byte
tag, so every chunk but the last is exactly ``chunk_size + 16`` bytes and chunk boundaries are implicit.
The final chunk may be shorter; it is empty (16 bytes, the tag) only when the whole plaintext is empty,
so every envelope has at least one chunk. For chunk ``i``::

    nonce_i = nonce_base || u32(i)
    aad_i   = SHA-256(header bytes) || u32(i) || u8(1 if chunk i is the final chunk else 0)

Binding the header hash, the index and the final flag into every chunk detects header tampering,
reordered or dropped chunks, truncation (no chunk carries the final flag: :class:`TruncatedEnvelope`)
and data appended after the final chunk (:class:`TamperedEnvelope`). A stream cut in the middle of a
chunk cannot be told apart from a corrupted chunk and is reported as :class:`TamperedEnvelope`.

Streaming caveat: :func:`open_stream` yields each chunk's plaintext as soon as that chunk verifies;
truncation is only known at the end. Treat the output as incomplete until the iterator is exhausted
without raising.

Nothing here logs, and no exception message carries plaintext or key material.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "DATA_KEY_SIZE",
    "DEFAULT_CHUNK_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_CHUNK_SIZE",
    "MAX_HEADER_BODY_SIZE",
    "MIN_CHUNK_SIZE",
    "ContextMismatch",
    "DataKey",
    "EnvelopeError",
    "EnvelopeHeader",
    "MalformedEnvelope",
    "ObjectContext",
    "TamperedEnvelope",
    "TruncatedEnvelope",
    "WrongKey",
    "open_bytes",
    "open_stream",
    "read_header",
    "seal",
    "seal_bytes",
]

MAGIC = b"LKNS"
FORMAT_VERSION = 1
DATA_KEY_SIZE = 32
NONCE_BASE_SIZE = 8
TAG_SIZE = 16
COMMITMENT_SIZE = 32
DEFAULT_CHUNK_SIZE = 1 << 20
# Tiny chunks are wasteful but harmless (tests use them); the cap bounds what a reader buffers.
MIN_CHUNK_SIZE = 1
MAX_CHUNK_SIZE = 16 << 20
MAX_HEADER_BODY_SIZE = 64 << 10
# The chunk index is a u32 in the nonce; past that, nonces would repeat.
MAX_CHUNKS = 1 << 32

_COMMIT_LABEL = b"likeness-envelope-commit"
_PREAMBLE = struct.Struct(">4sBI")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_CHUNK_POSITION = struct.Struct(">IB")
_U16_MAX = (1 << 16) - 1
_U32_MAX = (1 << 32) - 1


class EnvelopeError(Exception):
    """Base of every failure to open an envelope."""


class MalformedEnvelope(EnvelopeError):
    """Not a (supported) envelope: bad magic, version or header encoding."""


class WrongKey(EnvelopeError):
    """The data key does not match the header's key commitment (or the header was altered)."""


class ContextMismatch(EnvelopeError):
    """The envelope is authentic but belongs to another tenant, subject, object key or kind."""


class TamperedEnvelope(EnvelopeError):
    """A chunk failed authentication, chunks were reordered, or data follows the final chunk."""


class TruncatedEnvelope(EnvelopeError):
    """The stream ended before the header was complete or before the final chunk."""


@dataclass(frozen=True)
class ObjectContext:
    """Where an object belongs; bound into the envelope so a copied object does not open elsewhere."""

    tenant: str
    subject: str
    object_key: str
    kind: str


@dataclass(frozen=True, repr=False)
class DataKey:
    """A per-object data key: ``plaintext`` only ever lives in memory, ``wrapped`` goes into the header."""

    plaintext: bytes
    wrapped: str
    key_name: str
    key_version: int

    def __repr__(self) -> str:
        return (
            f"DataKey(plaintext=<redacted>, wrapped={self.wrapped!r}, "
            f"key_name={self.key_name!r}, key_version={self.key_version!r})"
        )


@dataclass(frozen=True)
class EnvelopeHeader:
    format_version: int
    key_name: str
    key_version: int
    wrapped_key: str
    nonce_base: bytes
    chunk_size: int
    context: ObjectContext
    key_commitment: bytes


# ---------------------------------------------------------------------------------------------- encoding


def _encode_text(value: str, field_name: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field_name} must be a non-empty string")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field_name} is not encodable as UTF-8") from None
    if len(raw) > _U16_MAX:
        raise ValueError(f"{field_name} is too long")
    return _U16.pack(len(raw)) + raw


def _check_int(value: int, low: int, high: int, field_name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{field_name} must be an integer in [{low}, {high}]")
    return value


def _header_prefix(
    format_version: int,
    key_name: str,
    key_version: int,
    wrapped_key: str,
    nonce_base: bytes,
    chunk_size: int,
    context: ObjectContext,
) -> bytes:
    """Validated header bytes up to (excluding) the key commitment: exactly what the commitment covers."""
    if format_version != FORMAT_VERSION:
        raise ValueError("unsupported format version")
    if not isinstance(nonce_base, bytes) or len(nonce_base) != NONCE_BASE_SIZE:
        raise ValueError(f"nonce_base must be {NONCE_BASE_SIZE} bytes")
    if not isinstance(context, ObjectContext):
        raise ValueError("context must be an ObjectContext")
    body = b"".join(
        [
            _encode_text(key_name, "key_name"),
            _U32.pack(_check_int(key_version, 1, _U32_MAX, "key_version")),
            _encode_text(wrapped_key, "wrapped_key"),
            nonce_base,
            _U32.pack(_check_int(chunk_size, MIN_CHUNK_SIZE, MAX_CHUNK_SIZE, "chunk_size")),
            _encode_text(context.tenant, "tenant"),
            _encode_text(context.subject, "subject"),
            _encode_text(context.object_key, "object_key"),
            _encode_text(context.kind, "kind"),
        ]
    )
    body_length = len(body) + COMMITMENT_SIZE
    if body_length > MAX_HEADER_BODY_SIZE:
        raise ValueError("header is too large")
    return _PREAMBLE.pack(MAGIC, format_version, body_length) + body


def _prefix_of(header: EnvelopeHeader) -> bytes:
    return _header_prefix(
        header.format_version,
        header.key_name,
        header.key_version,
        header.wrapped_key,
        header.nonce_base,
        header.chunk_size,
        header.context,
    )


def _commitment(data_key: bytes, header_prefix: bytes) -> bytes:
    return hmac.new(data_key, _COMMIT_LABEL + header_prefix, hashlib.sha256).digest()


def _nonce(nonce_base: bytes, index: int) -> bytes:
    return nonce_base + _U32.pack(index)


def _chunk_aad(header_digest: bytes, index: int, final: bool) -> bytes:
    return header_digest + _CHUNK_POSITION.pack(index, 1 if final else 0)


def _pieces(data: Iterable[bytes] | bytes) -> Iterator[bytes]:
    # A bytes object is itself iterable (of ints): treat it as one piece.
    if isinstance(data, bytes | bytearray | memoryview):
        return iter((bytes(data),))
    return iter(data)


# ------------------------------------------------------------------------------------------------ sealing


def seal(
    plaintext: Iterable[bytes] | bytes,
    key: DataKey,
    context: ObjectContext,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[bytes]:
    """Encrypt ``plaintext`` (bytes or pieces of any size) into an envelope, yielding the header first.

    Arguments are validated eagerly (``ValueError``); the plaintext is consumed lazily, holding at most
    about one chunk plus one input piece in memory.
    """
    if not isinstance(key.plaintext, bytes) or len(key.plaintext) != DATA_KEY_SIZE:
        raise ValueError(f"data key must be {DATA_KEY_SIZE} bytes")
    nonce_base = os.urandom(NONCE_BASE_SIZE)
    prefix = _header_prefix(
        FORMAT_VERSION, key.key_name, key.key_version, key.wrapped, nonce_base, chunk_size, context
    )
    header_bytes = prefix + _commitment(key.plaintext, prefix)
    return _seal_chunks(header_bytes, _pieces(plaintext), AESGCM(key.plaintext), nonce_base, chunk_size)


def _seal_chunks(
    header_bytes: bytes, pieces: Iterator[bytes], aead: AESGCM, nonce_base: bytes, chunk_size: int
) -> Iterator[bytes]:
    yield header_bytes
    header_digest = hashlib.sha256(header_bytes).digest()
    source = _Source(pieces)
    index = 0
    chunk = source.read_view(chunk_size)
    # One chunk of lookahead tells whether the current chunk is the final one.
    while True:
        following = source.read_view(chunk_size)
        final = not following
        if not final and index >= MAX_CHUNKS - 1:
            raise ValueError("plaintext needs too many chunks for this chunk size")
        yield aead.encrypt(_nonce(nonce_base, index), chunk, _chunk_aad(header_digest, index, final))
        if final:
            return
        chunk = following
        index += 1


def seal_bytes(
    plaintext: Iterable[bytes] | bytes,
    key: DataKey,
    context: ObjectContext,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> bytes:
    """:func:`seal`, joined into one blob."""
    return b"".join(seal(plaintext, key, context, chunk_size))


# ------------------------------------------------------------------------------------------------ reading


class _Source:
    """Reads exact byte counts out of an iterator of arbitrarily sized pieces.

    `read_view` hands out slices of the current piece without copying whenever the piece holds enough,
    so sealing or opening one large blob copies each byte only where it must (into the cipher's output).
    """

    def __init__(self, pieces: Iterator[bytes | memoryview]) -> None:
        self._pieces = pieces
        self._view = memoryview(b"")

    def _next_piece(self) -> bool:
        for piece in self._pieces:
            if piece:
                self._view = memoryview(piece)
                return True
        return False

    def read_view(self, size: int) -> bytes | memoryview:
        """Up to ``size`` bytes; fewer only at the end of the stream."""
        if len(self._view) >= size:
            out, self._view = self._view[:size], self._view[size:]
            return out
        assembled = bytearray(self._view)
        self._view = memoryview(b"")
        while len(assembled) < size and self._next_piece():
            need = size - len(assembled)
            assembled += self._view[:need]
            self._view = self._view[need:]
        return bytes(assembled)

    def read(self, size: int) -> bytes:
        return bytes(self.read_view(size))

    def at_end(self) -> bool:
        return not self._view and not self._next_piece()

    def rest(self) -> Iterator[bytes | memoryview]:
        if self._view:
            leftover, self._view = self._view, memoryview(b"")
            yield leftover  # a view, not a copy: the rest of a large blob is handed on as it is
        yield from self._pieces


class _Cursor:
    """Bounds-checked field reader over a header body; every overrun is a malformed header."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0

    def take(self, size: int) -> bytes:
        end = self._position + size
        if end > len(self._data):
            raise MalformedEnvelope("header fields overrun the header length")
        out = self._data[self._position : end]
        self._position = end
        return out

    def u32(self) -> int:
        value: int = _U32.unpack(self.take(_U32.size))[0]
        return value

    def text(self, field_name: str) -> str:
        (length,) = _U16.unpack(self.take(_U16.size))
        try:
            return self.take(length).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedEnvelope(f"header field {field_name} is not valid UTF-8") from None

    def finish(self) -> None:
        if self._position != len(self._data):
            raise MalformedEnvelope("unexpected bytes at the end of the header")


def read_header(stream: Iterable[bytes] | bytes) -> tuple[EnvelopeHeader, Iterator[bytes | memoryview]]:
    """Parse and validate the envelope header; return it with the rest of the stream (the chunks).

    Only the header bytes are consumed from ``stream`` (plus whatever the piece holding its end carried,
    which is handed back at the front of the returned iterator). The header is not yet authenticated:
    :func:`open_stream` checks it against the data key.
    """
    source = _Source(_pieces(stream))
    preamble = source.read(_PREAMBLE.size)
    if len(preamble) < _PREAMBLE.size:
        if not MAGIC.startswith(preamble[: len(MAGIC)]):
            raise MalformedEnvelope("not an envelope (bad magic)")
        raise TruncatedEnvelope("stream ended inside the envelope header")
    magic, format_version, body_length = _PREAMBLE.unpack(preamble)
    if magic != MAGIC:
        raise MalformedEnvelope("not an envelope (bad magic)")
    if format_version != FORMAT_VERSION:
        raise MalformedEnvelope(f"unsupported envelope format version {format_version}")
    if body_length > MAX_HEADER_BODY_SIZE:
        raise MalformedEnvelope("header length exceeds the limit")
    body = source.read(body_length)
    if len(body) < body_length:
        raise TruncatedEnvelope("stream ended inside the envelope header")

    cursor = _Cursor(body)
    key_name = cursor.text("key_name")
    key_version = cursor.u32()
    wrapped_key = cursor.text("wrapped_key")
    nonce_base = cursor.take(NONCE_BASE_SIZE)
    chunk_size = cursor.u32()
    context = ObjectContext(
        tenant=cursor.text("tenant"),
        subject=cursor.text("subject"),
        object_key=cursor.text("object_key"),
        kind=cursor.text("kind"),
    )
    key_commitment = cursor.take(COMMITMENT_SIZE)
    cursor.finish()

    header = EnvelopeHeader(
        format_version=format_version,
        key_name=key_name,
        key_version=key_version,
        wrapped_key=wrapped_key,
        nonce_base=nonce_base,
        chunk_size=chunk_size,
        context=context,
        key_commitment=key_commitment,
    )
    try:
        prefix = _prefix_of(header)
    except ValueError as exc:  # field-level messages only name the field, never its value
        raise MalformedEnvelope(f"invalid header: {exc}") from None
    # The encoding is canonical, so re-encoding must reproduce the bytes that were read; open_stream
    # relies on this to recompute the header hash from the parsed fields.
    if prefix + key_commitment != preamble + body:
        raise MalformedEnvelope("header is not canonically encoded")
    return header, source.rest()


def _context_differences(actual: ObjectContext, expected: ObjectContext) -> list[str]:
    return [f.name for f in fields(ObjectContext) if getattr(actual, f.name) != getattr(expected, f.name)]


def open_stream(
    header: EnvelopeHeader,
    rest: Iterable[bytes | memoryview],
    plaintext_key: bytes,
    expected: ObjectContext,
) -> Iterator[bytes]:
    """Decrypt the chunks following ``header``, yielding plaintext chunk by chunk.

    The key commitment and the context are checked eagerly (raising :class:`WrongKey` or
    :class:`ContextMismatch` from this call); chunk failures are raised while iterating. See the
    module docstring for the streaming caveat.
    """
    try:
        prefix = _prefix_of(header)
    except ValueError as exc:
        raise MalformedEnvelope(f"invalid header: {exc}") from None
    if not isinstance(header.key_commitment, bytes) or len(header.key_commitment) != COMMITMENT_SIZE:
        raise MalformedEnvelope(f"key_commitment must be {COMMITMENT_SIZE} bytes")
    if len(plaintext_key) != DATA_KEY_SIZE or not hmac.compare_digest(
        _commitment(plaintext_key, prefix), header.key_commitment
    ):
        raise WrongKey("the data key does not match the envelope's key commitment")
    # Checked after the commitment, so the context compared here is authenticated.
    if header.context != expected:
        differing = ", ".join(_context_differences(header.context, expected))
        raise ContextMismatch(f"envelope belongs to a different object (differs in: {differing})")
    header_bytes = prefix + header.key_commitment
    return _open_chunks(header_bytes, header, _Source(iter(rest)), AESGCM(plaintext_key))


def _open_chunks(
    header_bytes: bytes, header: EnvelopeHeader, source: _Source, aead: AESGCM
) -> Iterator[bytes]:
    header_digest = hashlib.sha256(header_bytes).digest()
    full_size = header.chunk_size + TAG_SIZE

    def decrypt(segment: bytes | memoryview, index: int, final: bool) -> bytes | None:
        try:
            return aead.decrypt(
                _nonce(header.nonce_base, index), segment, _chunk_aad(header_digest, index, final)
            )
        except InvalidTag:
            return None

    index = 0
    while True:
        segment = source.read_view(full_size)
        if not segment:
            raise TruncatedEnvelope("stream ended before the final chunk")
        if index >= MAX_CHUNKS or len(segment) < TAG_SIZE:
            raise TamperedEnvelope(f"chunk {index} is not a valid chunk")
        # A short segment can only be the final chunk; a full one is final only if nothing follows it.
        if len(segment) < full_size or source.at_end():
            plaintext = decrypt(segment, index, final=True)
            if plaintext is None:
                # A full chunk that verifies as non-final means the chunks after it were cut off.
                if len(segment) == full_size and decrypt(segment, index, final=False) is not None:
                    raise TruncatedEnvelope("stream ended before the final chunk")
                raise TamperedEnvelope(f"chunk {index} failed authentication")
            if not plaintext and index > 0:
                raise TamperedEnvelope("empty final chunk after data")
            yield plaintext
            return
        plaintext = decrypt(segment, index, final=False)
        if plaintext is None:
            if decrypt(segment, index, final=True) is not None:
                raise TamperedEnvelope("data follows the final chunk")
            raise TamperedEnvelope(f"chunk {index} failed authentication")
        yield plaintext
        index += 1


def open_bytes(blob: bytes, plaintext_key: bytes, expected: ObjectContext) -> bytes:
    """Open a whole envelope held in memory."""
    header, rest = read_header(blob)
    return b"".join(open_stream(header, rest, plaintext_key, expected))
