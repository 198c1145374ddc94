"""Envelope throughput: our streaming, chunked, key-committed format against a one-shot AES-256-GCM baseline.

The chunking (so large blobs stream and truncation is detected) must cost little: the goal is at least
0.8 of the baseline's throughput on the streaming path (what uploads to and downloads from S3 use), both
measured side by side in this process on the same payload. The `*_bytes` helpers add one join.

    .venv/bin/python bench/envelope.py [--mib 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Iterable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from likeness import envelope
from likeness.envelope import DataKey, ObjectContext

GOAL = 0.8


def best_seconds(run: Callable[[], object], rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    payload = os.urandom(args.mib * 1024 * 1024)
    key = DataKey(
        plaintext=os.urandom(32), wrapped="vault:v1:bench", key_name="likeness-subject-bench", key_version=1
    )
    context = ObjectContext(
        tenant="bench", subject="sub_bench", object_key="t/bench/s/sub_bench/photos/x", kind="photo"
    )
    aead = AESGCM(key.plaintext)
    nonce = os.urandom(12)
    sealed = envelope.seal_bytes(payload, key, context)
    baseline_ciphertext = aead.encrypt(nonce, payload, b"")

    def drain(chunks: Iterable[bytes]) -> int:
        return sum(len(chunk) for chunk in chunks)

    def open_streaming() -> int:
        header, rest = envelope.read_header(sealed)
        return drain(envelope.open_stream(header, rest, key.plaintext, context))

    chunk = envelope.DEFAULT_CHUNK_SIZE
    view = memoryview(payload)
    raw_chunks = [aead.encrypt(nonce, view[i : i + chunk], b"") for i in range(0, len(payload), chunk)]

    def raw_chunked_encrypt() -> int:
        return drain(aead.encrypt(nonce, view[i : i + chunk], b"") for i in range(0, len(payload), chunk))

    def raw_chunked_decrypt() -> int:
        return drain(aead.decrypt(nonce, c, b"") for c in raw_chunks)

    encrypt_once = best_seconds(lambda: aead.encrypt(nonce, payload, b""), args.rounds)
    decrypt_once = best_seconds(lambda: aead.decrypt(nonce, baseline_ciphertext, b""), args.rounds)
    # Stream rows: the production path (chunks go straight to S3 or to the caller) against the bare cipher
    # over the same chunks, so the ratio is the cost of our framing (header, commitment, AAD, lookahead).
    # Bytes rows: the in-memory helpers against one-shot AES-GCM, for reference.
    rows = {
        "seal stream": (
            best_seconds(lambda: drain(envelope.seal(payload, key, context)), args.rounds),
            best_seconds(raw_chunked_encrypt, args.rounds),
        ),
        "open stream": (
            best_seconds(open_streaming, args.rounds),
            best_seconds(raw_chunked_decrypt, args.rounds),
        ),
        "seal bytes": (
            best_seconds(lambda: envelope.seal_bytes(payload, key, context), args.rounds),
            encrypt_once,
        ),
        "open bytes": (
            best_seconds(lambda: envelope.open_bytes(sealed, key.plaintext, context), args.rounds),
            decrypt_once,
        ),
    }
    print(f"envelope vs bare AES-256-GCM, {args.mib} MiB, best of {args.rounds}")
    print(f"{'op':<12}{'envelope MiB/s':>16}{'baseline MiB/s':>16}{'ratio':>8}")
    ratios = {}
    for op, (ours, baseline) in rows.items():
        ratios[op] = baseline / ours
        print(f"{op:<12}{args.mib / ours:>16.0f}{args.mib / baseline:>16.0f}{ratios[op]:>8.2f}")
    overhead = len(sealed) / len(payload) - 1
    print(f"size overhead: {overhead * 100:.4f}%")
    ratio = statistics.fmean([ratios["seal stream"], ratios["open stream"]])
    print(
        json.dumps(
            {
                "bench": "envelope",
                "ratio": round(ratio, 3),
                "goal": GOAL,
                **{f"{k.replace(' ', '_')}_ratio": round(v, 3) for k, v in ratios.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
