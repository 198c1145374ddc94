"""Leak scanners: what a stack left on disk, in its logs and in its metrics, checked for a person's data.

Three scans, each returning findings (an empty list is a pass), used by the end-to-end, fault and load
tests after they ran:

- `scan_plaintext(roots, secrets)`: files under the servers' data dirs (S3, NATS) and the services'
  temp dir hold no image signature and no 64-byte run of any secret (photo bytes, decoded pixels,
  rendered images). Ciphertext never repeats a 64-byte run of its plaintext, so a hit is a leak.
- `scan_text(paths, needles)`: log files hold none of the needles (subject ids, external refs, tokens,
  the stack's secrets).
- `scan_metric_labels(urls, needles)`: no label value of any `/metrics` sample contains a needle or
  looks like one of our ids.
- `scan_streams(js, needles)`: no message JetStream keeps (every stream, KV buckets included: subject,
  headers, payload) holds a needle, e.g. an erased subject's id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import nats.js.errors
import numpy as np
from nats.js import JetStreamContext

from likeness.provisioning import SERVICE_IDENTITIES

if TYPE_CHECKING:
    from likeness_dev.stack import DevStack

WINDOW = 64
BLOCK = WINDOW // 2
#: Runs of a few repeated values (a black border, zero padding) identify nobody and occur in any file.
MIN_DISTINCT = 12
#: Signatures long enough that ciphertext will not produce them by chance.
SIGNATURES = {
    "png": b"\x89PNG\r\n\x1a\n",
    "jpeg-jfif": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "jpeg-exif": b"Exif\x00\x00MM\x00*",
    "jpeg-exif-le": b"Exif\x00\x00II*\x00",
    "jpeg-dqt": b"\xff\xd8\xff\xdb\x00\x43",
    "webp": b"WEBPVP8",
}
#: Any of our ids (`sub_`, `pho_`, ... then 26 Crockford base32 characters), anywhere in a string.
ANY_ID = re.compile(r"\b(?:sub|pho|trn|ren|img|era|job)_[0-9a-hjkmnp-tv-z]{26}\b")


@dataclass(frozen=True)
class Finding:
    """One leak: where it is and what was found (a label, never the secret itself)."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.what} in {self.where}"


class RunIndex:
    """Finds any WINDOW-byte run of several secrets inside a haystack, fast enough for hundreds of MB.

    Any WINDOW-byte run of a secret contains a BLOCK-aligned block of it; blocks with at least
    MIN_DISTINCT byte values (a meaningful run has one) are indexed by their first 8 bytes. numpy compares
    the 8 bytes at every offset of the haystack against that index at once; the few candidates are then
    extended and compared in full.
    """

    def __init__(self, secrets: Sequence[tuple[str, bytes]]) -> None:
        self.secrets = list(secrets)
        self.starts: dict[int, list[tuple[int, int]]] = {}
        for number, (_, data) in enumerate(self.secrets):
            for start in range(0, len(data) - BLOCK + 1, BLOCK):
                block = data[start : start + BLOCK]
                if len(set(block)) >= MIN_DISTINCT:
                    key = int.from_bytes(block[:8], "little")
                    self.starts.setdefault(key, []).append((number, start))
        self.keys = np.sort(np.fromiter(self.starts, dtype=np.uint64, count=len(self.starts)))
        # A 2^24-entry bitmap of the keys' low bits rejects almost every offset with one lookup.
        self.bitmap = np.zeros(1 << 24, dtype=bool)
        self.bitmap[(self.keys & np.uint64(0xFFFFFF)).astype(np.int64)] = True

    def find(self, haystack: bytes) -> str | None:
        """The label of a secret one of whose runs occurs in `haystack`, or None."""
        if len(haystack) < WINDOW or not len(self.keys):
            return None
        every_offset = np.ndarray(shape=(len(haystack) - 7,), dtype="<u8", buffer=haystack, strides=(1,))
        maybe = np.flatnonzero(self.bitmap[(every_offset & np.uint64(0xFFFFFF)).astype(np.int64)])
        values = every_offset[maybe]
        slots = np.minimum(np.searchsorted(self.keys, values), len(self.keys) - 1)
        for offset in maybe[self.keys[slots] == values]:
            for number, start in self.starts[int(every_offset[offset])]:
                if self._extends(haystack, int(offset), self.secrets[number][1], start):
                    return self.secrets[number][0]
        return None

    @staticmethod
    def _extends(haystack: bytes, offset: int, needle: bytes, start: int) -> bool:
        for shift in range(0, BLOCK + 1):
            n_start, h_start = start - shift, offset - shift
            if n_start < 0 or h_start < 0:
                continue
            run = needle[n_start : n_start + WINDOW]
            if len(run) == WINDOW and run == haystack[h_start : h_start + WINDOW]:
                return True
        return False


def photo_secrets(photos: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """What of each uploaded photo must never be stored in clear: its file bytes and its decoded pixels."""
    import io

    import PIL.Image

    found: list[tuple[str, bytes]] = []
    for name, data in photos:
        found.append((f"{name} file bytes", data))
        with PIL.Image.open(io.BytesIO(data)) as image:
            found.append((f"{name} pixels", image.convert("RGB").tobytes()))
    return found


def files_under(*roots: Path) -> Iterable[Path]:
    for root in roots:
        if root.is_dir():
            yield from (path for path in sorted(root.rglob("*")) if path.is_file() and not path.is_symlink())


@dataclass
class PlaintextScan:
    findings: list[Finding]
    files: int
    bytes_scanned: int


def scan_plaintext(roots: Iterable[Path], secrets: Sequence[tuple[str, bytes]]) -> PlaintextScan:
    """Every file under `roots`: no image signature, no WINDOW-byte run of any secret."""
    index = RunIndex(secrets)
    findings: list[Finding] = []
    files = scanned = 0
    for path in files_under(*roots):
        try:
            content = path.read_bytes()
        except OSError:  # a server may remove a file while we scan (compaction, rotation)
            continue
        files += 1
        scanned += len(content)
        findings += [
            Finding(str(path), f"{kind} signature") for kind, sig in SIGNATURES.items() if sig in content
        ]
        found = index.find(content)
        if found is not None:
            findings.append(Finding(str(path), f"a {WINDOW}-byte run of {found}"))
    return PlaintextScan(findings, files, scanned)


def scan_text(paths: Iterable[Path], needles: Mapping[str, str]) -> list[Finding]:
    """Files (logs) that contain one of the needles (label -> value; values shorter than 6 are skipped)."""
    usable = {label: value for label, value in needles.items() if len(value) >= 6}
    findings: list[Finding] = []
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        findings += [Finding(str(path), label) for label, value in usable.items() if value in text]
    return findings


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>.*)\}\s")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


def metric_label_values(exposition: str) -> list[tuple[str, str, str]]:
    """(metric, label, value) of every labelled sample in a Prometheus text exposition."""
    found: list[tuple[str, str, str]] = []
    for line in exposition.splitlines():
        sample = _SAMPLE.match(line)
        if sample is None:
            continue
        for label in _LABEL.finditer(sample["labels"]):
            found.append((sample["name"], label["key"], label["value"]))
    return found


def scan_metric_labels(urls: Iterable[str], needles: Mapping[str, str]) -> tuple[list[Finding], int]:
    """Scrapes each URL; returns findings (a needle in, or an id as, a label value) and labels seen."""
    findings: list[Finding] = []
    seen = 0
    for url in urls:
        response = httpx.get(url, timeout=10.0)
        if response.status_code == 404:
            continue
        response.raise_for_status()
        for metric, label, value in metric_label_values(response.text):
            seen += 1
            where = f"{url} {metric}{{{label}}}"
            findings += [
                Finding(where, what) for what, needle in needles.items() if needle and needle in value
            ]
            if ANY_ID.search(value):
                findings.append(Finding(where, "an id as a label value"))
    return findings, seen


async def scan_streams(
    js: JetStreamContext, needles: Mapping[str, str], streams: Iterable[str] | None = None
) -> tuple[list[Finding], int]:
    """Every message kept by JetStream (KV buckets are streams too: their keys are NATS subjects, so a
    delete or purge marker keeps a key): its NATS subject, headers and payload, searched for each needle.

    `streams`: the names to read (default every stream on the server, which needs an unrestricted
    connection). Returns the findings and how many messages were read (to check that it read something).
    """
    findings: list[Finding] = []
    read = 0
    names = list(streams) if streams is not None else [info.config.name for info in await js.streams_info()]
    for name in names:
        if name is None:
            continue
        state = (await js.stream_info(name)).state
        if not state.messages:
            continue
        for sequence in range(state.first_seq, state.last_seq + 1):
            try:
                message = await js.get_msg(name, sequence)
            except nats.js.errors.NotFoundError:
                continue  # deleted or purged: nothing of it is kept
            read += 1
            headers = json.dumps(message.headers or {}).encode()
            kept = (message.subject or "").encode() + b"\n" + headers + b"\n" + (message.data or b"")
            for what, needle in needles.items():
                if needle and needle.encode() in kept:
                    findings.append(Finding(f"stream {name} message {sequence} ({message.subject})", what))
    return findings, read


def stack_secrets(stack: DevStack) -> dict[str, str]:
    """The key material of a stack that must never appear in a log line or a label."""
    endpoints = stack.infra.endpoints
    found = {
        "the HMAC secret": stack.hmac_secret,
        "the audit pseudonym secret": stack.audit_pseudonym_secret,
        "the JWT signing secret": stack.jwt_secret,
        "the idempotency secret": stack.idempotency_secret,
        "the admin S3 secret key": endpoints.s3_secret_key,
        "the Vault token": endpoints.vault_token,
        "the admin NATS URL (with its password)": endpoints.nats_url,
    }
    if stack.infra.vault_unseal_key:
        found["the Vault unseal key"] = stack.infra.vault_unseal_key
    for identity in SERVICE_IDENTITIES:
        credentials = stack.infra.credentials(identity)
        found[f"the NATS password of {identity}"] = credentials.nats_password
        if credentials.s3_secret_key:
            found[f"the S3 secret key of {identity}"] = credentials.s3_secret_key
    return found


def scan_stack(
    stack: DevStack, secrets: Sequence[tuple[str, bytes]], needles: Mapping[str, str]
) -> tuple[list[Finding], PlaintextScan]:
    """All three scans over one stack: its servers' data and its temp dir, its services' logs, and
    every `/metrics` it serves. `needles` (subject ids, external refs, tokens) are added to the stack's
    own secrets. Returns the findings and the plaintext scan (to check that it read something)."""
    endpoints = stack.infra.endpoints
    plaintext = scan_plaintext([endpoints.s3_data_dir, endpoints.nats_store_dir, stack.tmp_dir], secrets)
    everything = dict(needles) | stack_secrets(stack)
    logs = [service.process.log_path for service in stack.services.values()]
    urls = [f"{service.metrics_url}/metrics" for service in stack.services.values()]
    urls += [f"{url}/metrics" for url in stack.gateway_urls]
    labels, _ = scan_metric_labels(urls, everything)
    return plaintext.findings + scan_text(logs, everything) + labels, plaintext


__all__ = [
    "ANY_ID",
    "SIGNATURES",
    "WINDOW",
    "Finding",
    "PlaintextScan",
    "RunIndex",
    "files_under",
    "metric_label_values",
    "photo_secrets",
    "scan_metric_labels",
    "scan_plaintext",
    "scan_stack",
    "scan_streams",
    "scan_text",
    "stack_secrets",
]
