"""Logs, traces and metrics for every process.

- JSON log lines carrying the current trace and span ids; never payloads or personal data.
- OpenTelemetry tracing, exported over OTLP when `LIKENESS_OTLP_ENDPOINT` is set; trace context crosses
  processes as W3C `traceparent` in HTTP headers, gRPC metadata (`likeness.grpc_telemetry`,
  `likeness.http_tracing`) and NATS message headers (`likeness.bus`).
- A small HTTP endpoint on the metrics port: `/metrics` (Prometheus) and `/healthz` (readiness).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlparse

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from likeness.ids import redact_subject_ids

_RESERVED = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": redact_subject_ids(record.getMessage()),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = f"{context.trace_id:032x}"
            entry["span_id"] = f"{context.span_id:016x}"
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = redact_subject_ids(value) if isinstance(value, str) else value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
            # Tracebacks carry no local values, but an exception's message can quote a URL or object key
            # (a third-party SDK's, say): subject ids are redacted from the whole line as a last defence.
            entry["traceback"] = redact_subject_ids(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def setup_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party loggers can echo request bodies or URLs with ids at DEBUG; keep them quiet.
    for noisy in ("urllib3", "hvac", "nats", "httpx", "grpc", "diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def setup_tracing(service: str, otlp_endpoint: str = "") -> None:
    """Traces of this process, exported over OTLP/gRPC when `otlp_endpoint` is set (`https://host:4317` for
    TLS, `http://` for plaintext: refused in production by `likeness.config`). Context travels as W3C
    `traceparent` only: a caller's `baggage` could hold anything and would otherwise be copied into every
    gRPC call and stored in NATS message headers (the gateway also starts a new trace for every request:
    `likeness.http_tracing`)."""
    propagate.set_global_textmap(TraceContextTextMapPropagator())
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.namespace": "likeness"})
    )
    if otlp_endpoint:
        provider.add_span_processor(BatchSpanProcessor(otlp_exporter(otlp_endpoint)))
    trace.set_tracer_provider(provider)


def otlp_exporter(endpoint: str) -> SpanExporter:
    """The OTLP/gRPC exporter of `endpoint`, TLS exactly when its scheme is `https`.

    Said explicitly: left to itself the exporter reads `OTEL_EXPORTER_OTLP_INSECURE` (and its traces
    variant) for an endpoint without a scheme, so the environment could turn TLS off behind the settings.
    """
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    scheme = urlparse(endpoint).scheme
    if scheme not in ("https", "http"):
        raise ValueError("an OTLP endpoint is https://host:port (or http:// in development)")
    return OTLPSpanExporter(endpoint=endpoint, insecure=scheme == "http")


ReadyCheck = Callable[[], bool]


class MetricsServer:
    """Serves `/metrics` and `/healthz` with asyncio alone (no web framework in worker images).

    `registry`: whose metrics to expose (the process-wide default unless a component keeps its own).
    Port 0 picks a free port, readable from `port` once started (tests)."""

    def __init__(
        self, port: int, ready: ReadyCheck, host: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY
    ) -> None:
        self.port = port
        self.host = host
        self.ready = ready
        self.registry = registry
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            if path == "/metrics":
                status, content_type, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
            elif path == "/healthz":
                ok = self.ready()
                status = "200 OK" if ok else "503 Service Unavailable"
                content_type, body = "text/plain", (b"ok" if ok else b"not ready")
            else:
                status, content_type, body = "404 Not Found", "text/plain", b"not found"
            head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
