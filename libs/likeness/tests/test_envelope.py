"""Envelope format: roundtrips, tamper/truncation/reorder detection, wrong keys and contexts, layout."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import struct
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from likeness.envelope import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MAX_HEADER_BODY_SIZE,
    ContextMismatch,
    DataKey,
    EnvelopeError,
    MalformedEnvelope,
    ObjectContext,
    TamperedEnvelope,
    TruncatedEnvelope,
    WrongKey,
    open_bytes,
    open_stream,
    read_header,
    seal,
    seal_bytes,
)

TAG = 16
PREAMBLE = 9
CONTEXT = ObjectContext(tenant="t-1", subject="s-42", object_key="photos/s-42/0001", kind="photo")
FAST = settings(max_examples=60, deadline=None)

chunk_sizes = st.sampled_from([1, 2, 3, 7, 16, 31, 64])
plaintexts = st.binary(max_size=300)


def make_key() -> DataKey:
    return DataKey(
        plaintext=os.urandom(32), wrapped="vault:v3:QUJD", key_name="likeness-objects", key_version=3
    )


KEY = make_key()


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """Split ``data`` at the given offsets (clamped, sorted); may produce empty pieces."""
    points = sorted(min(c, len(data)) for c in cuts)
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def header_length(blob: bytes) -> int:
    return PREAMBLE + int.from_bytes(blob[5:9], "big")


def split_chunks(blob: bytes, chunk_size: int) -> tuple[bytes, list[bytes]]:
    cut = header_length(blob)
    body = blob[cut:]
    step = chunk_size + TAG
    return blob[:cut], [body[i : i + step] for i in range(0, len(body), step)]


def open_pieces(pieces: list[bytes], key: bytes = KEY.plaintext, expected: ObjectContext = CONTEXT) -> bytes:
    header, rest = read_header(iter(pieces))
    return b"".join(open_stream(header, rest, key, expected))


# ------------------------------------------------------------------------------------------- roundtrips


@FAST
@given(
    plaintext=plaintexts,
    chunk_size=chunk_sizes,
    in_cuts=st.lists(st.integers(0, 300), max_size=8),
    out_cuts=st.lists(st.integers(0, 2000), max_size=8),
)
def test_envelope_roundtrips_any_plaintext_and_chunking(
    plaintext: bytes, chunk_size: int, in_cuts: list[int], out_cuts: list[int]
) -> None:
    blob = seal_bytes(iter(split_at(plaintext, in_cuts)), KEY, CONTEXT, chunk_size=chunk_size)

    assert open_pieces(split_at(blob, out_cuts)) == plaintext
    assert open_bytes(blob, KEY.plaintext, CONTEXT) == plaintext


@FAST
@given(plaintext=plaintexts, chunk_size=chunk_sizes)
def test_envelope_chunks_have_the_documented_sizes(plaintext: bytes, chunk_size: int) -> None:
    pieces = list(seal(plaintext, KEY, CONTEXT, chunk_size=chunk_size))
    header, chunks = pieces[0], pieces[1:]

    assert len(header) == header_length(header)
    expected_count = max(1, -(-len(plaintext) // chunk_size))
    assert len(chunks) == expected_count
    assert all(len(c) == chunk_size + TAG for c in chunks[:-1])
    assert 0 < len(chunks[-1]) - TAG <= chunk_size or plaintext == b""


def test_envelope_uses_a_fresh_nonce_per_object() -> None:
    a = seal_bytes(b"same bytes", KEY, CONTEXT, chunk_size=4)
    b = seal_bytes(b"same bytes", KEY, CONTEXT, chunk_size=4)

    assert a != b
    assert read_header(a)[0].nonce_base != read_header(b)[0].nonce_base


def test_seal_streams_lazily_from_an_endless_source() -> None:
    endless = itertools.repeat(b"abc")
    first = list(itertools.islice(seal(endless, KEY, CONTEXT, chunk_size=1024), 3))

    assert first[0].startswith(b"LKNS\x01")
    assert [len(c) for c in first[1:]] == [1024 + TAG, 1024 + TAG]


def test_default_chunk_size_is_one_mebibyte() -> None:
    blob = seal_bytes(b"x", KEY, CONTEXT)

    assert DEFAULT_CHUNK_SIZE == 1 << 20
    assert read_header(blob)[0].chunk_size == DEFAULT_CHUNK_SIZE


def test_read_header_returns_fields_and_the_remaining_stream() -> None:
    blob = seal_bytes(b"hello world", KEY, CONTEXT, chunk_size=4)
    pieces = [blob[:3], blob[3:50], blob[50:]]

    header, rest = read_header(iter(pieces))

    assert header.format_version == 1
    assert (header.key_name, header.key_version, header.wrapped_key) == (
        "likeness-objects",
        3,
        "vault:v3:QUJD",
    )
    assert header.chunk_size == 4
    assert header.context == CONTEXT
    assert len(header.nonce_base) == 8
    assert len(header.key_commitment) == 32
    assert b"".join(rest) == blob[header_length(blob) :]


# --------------------------------------------------------------------------------- tampering and damage


@FAST
@given(plaintext=plaintexts, chunk_size=chunk_sizes, data=st.data())
def test_flipping_any_byte_is_detected(plaintext: bytes, chunk_size: int, data: st.DataObject) -> None:
    blob = bytearray(seal_bytes(plaintext, KEY, CONTEXT, chunk_size=chunk_size))
    position = data.draw(st.integers(0, len(blob) - 1), label="position")
    blob[position] ^= data.draw(st.integers(1, 255), label="mask")

    with pytest.raises(EnvelopeError) as caught:
        open_bytes(bytes(blob), KEY.plaintext, CONTEXT)

    if position < PREAMBLE:
        assert isinstance(caught.value, MalformedEnvelope | TruncatedEnvelope)
    elif position < header_length(bytes(blob)):
        # The header body is covered by the key commitment.
        assert isinstance(caught.value, MalformedEnvelope | WrongKey)
    else:
        assert isinstance(caught.value, TamperedEnvelope)


@FAST
@given(plaintext=st.binary(min_size=2, max_size=300), chunk_size=chunk_sizes, data=st.data())
def test_dropping_trailing_chunks_is_truncation(
    plaintext: bytes, chunk_size: int, data: st.DataObject
) -> None:
    header, chunks = split_chunks(seal_bytes(plaintext, KEY, CONTEXT, chunk_size=chunk_size), chunk_size)
    if len(chunks) < 2:
        chunk_size = 1
        header, chunks = split_chunks(seal_bytes(plaintext, KEY, CONTEXT, chunk_size=1), 1)
    keep = data.draw(st.integers(0, len(chunks) - 1), label="keep")

    with pytest.raises(TruncatedEnvelope):
        open_bytes(header + b"".join(chunks[:keep]), KEY.plaintext, CONTEXT)


@FAST
@given(plaintext=st.binary(min_size=2, max_size=300), chunk_size=chunk_sizes, data=st.data())
def test_swapping_two_chunks_is_tampering(plaintext: bytes, chunk_size: int, data: st.DataObject) -> None:
    chunk_size = min(chunk_size, len(plaintext) - 1)  # at least two chunks
    header, chunks = split_chunks(seal_bytes(plaintext, KEY, CONTEXT, chunk_size=chunk_size), chunk_size)
    i, j = data.draw(st.lists(st.integers(0, len(chunks) - 1), min_size=2, max_size=2, unique=True))
    chunks[i], chunks[j] = chunks[j], chunks[i]

    with pytest.raises(TamperedEnvelope):
        open_bytes(header + b"".join(chunks), KEY.plaintext, CONTEXT)


@FAST
@given(plaintext=plaintexts, chunk_size=chunk_sizes, extra=st.binary(min_size=1, max_size=100))
def test_appended_bytes_are_tampering(plaintext: bytes, chunk_size: int, extra: bytes) -> None:
    blob = seal_bytes(plaintext, KEY, CONTEXT, chunk_size=chunk_size)

    with pytest.raises(TamperedEnvelope):
        open_bytes(blob + extra, KEY.plaintext, CONTEXT)


@FAST
@given(plaintext=plaintexts, chunk_size=chunk_sizes, data=st.data())
def test_every_strict_prefix_fails(plaintext: bytes, chunk_size: int, data: st.DataObject) -> None:
    blob = seal_bytes(plaintext, KEY, CONTEXT, chunk_size=chunk_size)
    cut = data.draw(st.integers(0, len(blob) - 1), label="cut")

    with pytest.raises((TruncatedEnvelope, TamperedEnvelope)):
        open_bytes(blob[:cut], KEY.plaintext, CONTEXT)


def test_a_chunk_from_another_envelope_under_the_same_key_is_rejected() -> None:
    a_header, a_chunks = split_chunks(seal_bytes(b"aaaaaaaa", KEY, CONTEXT, chunk_size=4), 4)
    _, b_chunks = split_chunks(seal_bytes(b"bbbbbbbb", KEY, CONTEXT, chunk_size=4), 4)

    with pytest.raises(TamperedEnvelope):
        open_bytes(a_header + a_chunks[0] + b_chunks[1], KEY.plaintext, CONTEXT)


# ------------------------------------------------------------------------------------ keys and contexts


@FAST
@given(plaintext=plaintexts, chunk_size=chunk_sizes, wrong=st.binary(min_size=32, max_size=32))
def test_a_wrong_key_is_reported_as_wrong_key(plaintext: bytes, chunk_size: int, wrong: bytes) -> None:
    blob = seal_bytes(plaintext, KEY, CONTEXT, chunk_size=chunk_size)
    header, rest = read_header(blob)

    with pytest.raises(WrongKey):
        open_stream(header, rest, wrong, CONTEXT)  # raised eagerly, before iterating


@pytest.mark.parametrize("bad", [b"", b"k" * 16, KEY.plaintext + b"!"], ids=["empty", "short", "long"])
def test_a_key_of_the_wrong_length_is_wrong_key(bad: bytes) -> None:
    with pytest.raises(WrongKey):
        open_bytes(seal_bytes(b"x", KEY, CONTEXT), bad, CONTEXT)


@pytest.mark.parametrize("field", ["tenant", "subject", "object_key", "kind"])
def test_a_different_expected_context_is_a_mismatch(field: str) -> None:
    blob = seal_bytes(b"photo bytes", KEY, CONTEXT, chunk_size=4)
    other = ObjectContext(**{**CONTEXT.__dict__, field: "elsewhere"})
    header, rest = read_header(blob)

    with pytest.raises(ContextMismatch) as caught:
        open_stream(header, rest, KEY.plaintext, other)

    assert field in str(caught.value)
    assert "elsewhere" not in str(caught.value)
    assert CONTEXT.subject not in str(caught.value)


@FAST
@given(subject=st.text(min_size=1, max_size=20), plaintext=plaintexts)
def test_an_object_opens_only_under_its_own_context(subject: str, plaintext: bytes) -> None:
    other = ObjectContext(CONTEXT.tenant, subject, CONTEXT.object_key, CONTEXT.kind)
    blob = seal_bytes(plaintext, KEY, other, chunk_size=16)

    assert open_bytes(blob, KEY.plaintext, other) == plaintext
    if other != CONTEXT:
        with pytest.raises(ContextMismatch):
            open_bytes(blob, KEY.plaintext, CONTEXT)


def test_rewriting_the_header_context_does_not_open() -> None:
    victim = ObjectContext("t-1", "s-1", "photos/s-1/0001", "photo")
    blob = seal_bytes(b"face", KEY, victim, chunk_size=4)
    rewritten = blob.replace(b"s-1", b"s-2")  # same lengths: still parses

    with pytest.raises(WrongKey):
        open_bytes(rewritten, KEY.plaintext, ObjectContext("t-1", "s-2", "photos/s-2/0001", "photo"))


def test_data_key_repr_hides_the_plaintext() -> None:
    key = DataKey(plaintext=bytes(range(32)), wrapped="vault:v1:xyz", key_name="k", key_version=1)

    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert "redacted" in text
        assert repr(key.plaintext) not in text
        assert key.plaintext.hex() not in text
        assert "\\x00\\x01" not in text
    assert "vault:v1:xyz" in repr(key)


def test_error_messages_carry_no_key_or_plaintext() -> None:
    secret = b"very secret face bytes"
    blob = seal_bytes(secret, KEY, CONTEXT, chunk_size=4)
    wrong = os.urandom(32)
    failures: list[EnvelopeError] = []
    attempts: list[Callable[[], bytes]] = [
        lambda: open_bytes(blob, wrong, CONTEXT),
        lambda: open_bytes(blob[:-1], KEY.plaintext, CONTEXT),
        lambda: open_bytes(blob + b"x", KEY.plaintext, CONTEXT),
        lambda: open_bytes(blob[: header_length(blob)], KEY.plaintext, CONTEXT),
    ]
    for attempt in attempts:
        with pytest.raises(EnvelopeError) as caught:
            attempt()
        failures.append(caught.value)

    for failure in failures:
        text = str(failure) + repr(failure)
        for material in (secret, KEY.plaintext, wrong):
            assert repr(material) not in text
            assert material.hex() not in text


# -------------------------------------------------------------------------------- layout and hostility


def test_layout_matches_the_documented_format() -> None:
    """Decode an envelope by hand, from the module docstring alone."""
    plaintext = b"0123456789abcdefXYZ"
    blob = seal_bytes(plaintext, KEY, CONTEXT, chunk_size=8)

    magic, version, body_length = struct.unpack(">4sBI", blob[:9])
    assert (magic, version) == (b"LKNS", 1)
    body = blob[9 : 9 + body_length]
    position = 0

    def take(n: int) -> bytes:
        nonlocal position
        position += n
        return body[position - n : position]

    def text() -> str:
        length: int = struct.unpack(">H", take(2))[0]
        return take(length).decode()

    assert text() == "likeness-objects"
    assert struct.unpack(">I", take(4))[0] == 3
    assert text() == "vault:v3:QUJD"
    nonce_base = take(8)
    assert struct.unpack(">I", take(4))[0] == 8
    assert ObjectContext(text(), text(), text(), text()) == CONTEXT
    commitment = take(32)
    assert position == body_length

    header_bytes = blob[: 9 + body_length]
    expected_commitment = hmac.new(
        KEY.plaintext, b"likeness-envelope-commit" + header_bytes[:-32], hashlib.sha256
    ).digest()
    assert commitment == expected_commitment

    digest = hashlib.sha256(header_bytes).digest()
    aead = AESGCM(KEY.plaintext)
    _, chunks = split_chunks(blob, 8)
    recovered = b""
    for index, chunk in enumerate(chunks):
        final = index == len(chunks) - 1
        nonce = nonce_base + struct.pack(">I", index)
        recovered += aead.decrypt(nonce, chunk, digest + struct.pack(">IB", index, int(final)))
    assert recovered == plaintext


def test_empty_plaintext_is_one_empty_final_chunk() -> None:
    header, chunks = split_chunks(seal_bytes(b"", KEY, CONTEXT, chunk_size=8), 8)

    assert [len(c) for c in chunks] == [TAG]
    assert open_bytes(header + chunks[0], KEY.plaintext, CONTEXT) == b""
    with pytest.raises(TruncatedEnvelope):
        open_bytes(header, KEY.plaintext, CONTEXT)


def _hostile_header(**overrides: object) -> bytes:
    """A header built by hand per the documented layout, with chosen fields replaced."""
    fields: dict[str, object] = {
        "key_name": b"k",
        "key_version": 1,
        "wrapped_key": b"vault:v1:x",
        "nonce_base": b"\x00" * 8,
        "chunk_size": 16,
        "context": [b"t", b"s", b"o", b"photo"],
        "commitment": b"\x00" * 32,
        "trailer": b"",
    }
    fields.update(overrides)

    def s(raw: object) -> bytes:
        assert isinstance(raw, bytes)
        return struct.pack(">H", len(raw)) + raw

    context = fields["context"]
    assert isinstance(context, list)
    body = b"".join(
        [
            s(fields["key_name"]),
            struct.pack(">I", fields["key_version"]),
            s(fields["wrapped_key"]),
            fields["nonce_base"],  # type: ignore[list-item]
            struct.pack(">I", fields["chunk_size"]),
            *(s(part) for part in context),
            fields["commitment"],  # type: ignore[list-item]
            fields["trailer"],  # type: ignore[list-item]
        ]
    )
    return struct.pack(">4sBI", b"LKNS", 1, len(body)) + body


def test_the_hostile_header_builder_produces_a_parsable_header() -> None:
    header, _ = read_header(_hostile_header())

    assert header.chunk_size == 16
    assert header.context == ObjectContext("t", "s", "o", "photo")


@pytest.mark.parametrize(
    "overrides",
    [
        {"chunk_size": MAX_CHUNK_SIZE + 1},
        {"chunk_size": 0xFFFFFFFF},
        {"chunk_size": 0},
        {"key_version": 0},
        {"key_name": b""},
        {"wrapped_key": b"\xff\xfe"},
        {"context": [b"t", b"", b"o", b"photo"]},
        {"trailer": b"\x00"},
    ],
    ids=lambda o: next(iter(o)),
)
def test_invalid_header_fields_are_malformed(overrides: dict[str, object]) -> None:
    with pytest.raises(MalformedEnvelope):
        read_header(_hostile_header(**overrides) + b"\x00" * 64)


@pytest.mark.parametrize(
    "prefix", [b"", b"L", b"LKN", b"LKNS\x01\x00", b"LKNS\x01\x00\x00\x00\x40" + b"\x00" * 10]
)
def test_a_stream_ending_inside_the_header_is_truncated(prefix: bytes) -> None:
    with pytest.raises(TruncatedEnvelope):
        read_header(prefix)
    with pytest.raises(TruncatedEnvelope):
        read_header(iter([prefix[:2], b"", prefix[2:]]))


@pytest.mark.parametrize(
    "prefix",
    [
        b"NOPE",
        b"PK\x03\x04\x00\x00\x00\x00\x00",
        b"LKNS\x02\x00\x00\x00\x10",
        b"LKNS\x00\x00\x00\x00\x10",
        b"LKNS\x01\x00\x00\x00\x00",
        b"LKNS\x01\x00\x00\x00\x10",
    ],
)
def test_bad_preambles_are_malformed(prefix: bytes) -> None:
    with pytest.raises(MalformedEnvelope):
        read_header(prefix + b"\x00" * 40)


def test_an_oversized_header_length_is_rejected_before_reading_it() -> None:
    pulled = 0

    def hostile() -> Iterator[bytes]:
        nonlocal pulled
        yield b"LKNS\x01" + struct.pack(">I", MAX_HEADER_BODY_SIZE + 1)
        while True:
            pulled += 1
            yield b"\x00" * 4096

    with pytest.raises(MalformedEnvelope):
        read_header(hostile())
    assert pulled == 0


def test_a_hostile_blob_cannot_make_the_reader_buffer_past_one_chunk() -> None:
    blob = seal_bytes(b"x" * 100, KEY, CONTEXT, chunk_size=16)
    header, rest = read_header(blob)
    pulled = 0

    def endless_garbage() -> Iterator[bytes]:
        nonlocal pulled
        yield from rest
        while True:
            pulled += 1
            yield b"\x00" * 8

    with pytest.raises(TamperedEnvelope):
        b"".join(open_stream(header, endless_garbage(), KEY.plaintext, CONTEXT))
    assert pulled <= (16 + TAG) // 8 + 1


# ----------------------------------------------------------------------------------- sealing arguments


@pytest.mark.parametrize("chunk_size", [0, -1, MAX_CHUNK_SIZE + 1])
def test_seal_rejects_bad_chunk_sizes(chunk_size: int) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        seal(b"x", KEY, CONTEXT, chunk_size=chunk_size)


def test_seal_rejects_a_key_that_is_not_32_bytes() -> None:
    short = DataKey(plaintext=b"k" * 16, wrapped="vault:v1:x", key_name="k", key_version=1)

    with pytest.raises(ValueError, match="32 bytes"):
        seal(b"x", short, CONTEXT)


@pytest.mark.parametrize("field", ["tenant", "subject", "object_key", "kind"])
def test_seal_rejects_empty_context_fields(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        seal(b"x", KEY, ObjectContext(**{**CONTEXT.__dict__, field: ""}))


def test_seal_rejects_a_header_over_the_limit() -> None:
    huge = ObjectContext("t", "s", "o" * 40_000, "k" * 40_000)

    with pytest.raises(ValueError, match="too large"):
        seal(b"x", KEY, huge)
