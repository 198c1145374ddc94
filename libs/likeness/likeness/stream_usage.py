"""How full each JetStream stream and KV bucket is, for the alerts that fire well before one is full.

Every stream has a byte bound (`likeness.provisioning`), and those that hold work or evidence refuse new
writes when full (`DiscardNew`): jobs, audit records, KV records. An operator must hear of it before then,
so each gRPC service reads the fill of the streams it already has `STREAM.INFO` rights on (its own KV
buckets; retention also the events, audit and job streams it reads or purges) every `interval` seconds into
`likeness_stream_bytes{stream}` and `likeness_stream_max_bytes{stream}`. The rules divide one by the other
(`likeness:stream_used:ratio`); the stream label names a stream, never a person.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge

from likeness.provisioning import BUCKETS, GPU_USAGE_BUCKET, IDENTITIES, STREAMS, bucket

log = logging.getLogger(__name__)

STREAM_BYTES = Gauge("likeness_stream_bytes", "Bytes a JetStream stream (or KV bucket) holds", ["stream"])
STREAM_MAX_BYTES = Gauge("likeness_stream_max_bytes", "The byte bound of a JetStream stream", ["stream"])
STREAM_MESSAGES = Gauge("likeness_stream_messages", "Messages a JetStream stream holds", ["stream"])
READ_ERRORS = Counter("likeness_stream_usage_read_errors", "Failed reads of a stream's fill", ["stream"])


def reported_streams(identity_name: str) -> tuple[str, ...]:
    """The streams an identity reports: its KV buckets' streams (and the GPU-seconds bucket it reads, which
    its writers, GPU workers that may be scaled to zero, cannot be relied on to report), and the streams it
    reads or purges (it holds `STREAM.INFO` on each already; `likeness.access_policies`)."""
    found = [spec for spec in IDENTITIES if spec.name == identity_name]
    if not found:
        return ()
    access = found[0].nats
    known_buckets = {spec.name for spec in BUCKETS}
    read = [name for name in access.kv_read if name == GPU_USAGE_BUCKET]
    kv_streams = [bucket(name).stream_name for name in (*access.kv, *read) if name in known_buckets]
    known_streams = {config.name for config in STREAMS}
    others = [name for name in (*access.stream_reads, *access.stream_purges) if name in known_streams]
    return tuple(dict.fromkeys([*kv_streams, *others]))


class StreamUsageMonitor:
    def __init__(self, js: JetStreamContext, streams: Sequence[str], interval: float = 15.0) -> None:
        self.js = js
        self.streams = tuple(streams)
        self.interval = interval
        for name in self.streams:
            READ_ERRORS.labels(name)

    async def run(self) -> None:
        while True:
            await self.measure()
            await asyncio.sleep(self.interval)

    async def measure(self) -> None:
        for name in self.streams:
            try:
                info = await self.js.stream_info(name)
            except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                READ_ERRORS.labels(name).inc()
                log.warning("stream fill not read", extra={"stream": name, "error": type(exc).__name__})
                continue
            STREAM_BYTES.labels(name).set(info.state.bytes)
            STREAM_MESSAGES.labels(name).set(info.state.messages)
            # -1 (or none): unbounded, which the spec never provisions; reported as 0 so no ratio is made.
            bound = info.config.max_bytes or 0
            STREAM_MAX_BYTES.labels(name).set(bound if bound > 0 else 0)
