"""The gateway's one role, `serve`: the REST API under uvicorn on 0.0.0.0:LIKENESS_HTTP_PORT, JSON logs,
with a header-read timeout of our own (`gateway.http_protocol`)."""

from __future__ import annotations

import gc
import logging
import os

import uvicorn

from gateway.app import create_app
from gateway.config import GatewaySettings, get_settings
from gateway.http_protocol import with_header_timeout
from gateway.middleware import install_request_id_logging
from likeness.telemetry import setup_logging, setup_tracing


def setup_observability(settings: GatewaySettings) -> None:
    """JSON logs with request ids, and tracing (recorded only when there is somewhere to send it)."""
    setup_logging(settings.service_name, settings.log_level)
    install_request_id_logging()
    # Our JSON lines print none of what these look up for every record (caller's file and line, thread,
    # process): an access line per request need not walk the stack for them.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if not settings.otlp_endpoint:
        # Nothing exports spans: record none (a recorded span costs more than a cached read). Trace ids are
        # still made for log lines and passed on to the backends, unsampled. OTEL_TRACES_SAMPLER overrides.
        os.environ.setdefault("OTEL_TRACES_SAMPLER", "parentbased_always_off")
    setup_tracing(settings.service_name, settings.otlp_endpoint)


def serve() -> None:
    """Serves the REST API until SIGTERM (uvicorn drains open requests for up to 20 s).

    uvicorn with the gateway's own HTTP protocol (`gateway.http_protocol`: uvicorn's h11 protocol plus a
    header-read timeout, which uvicorn lacks; that module says why not another server). Idle keep-alive
    connections close after `LIKENESS_KEEP_ALIVE_TIMEOUT_SECONDS`; bodies and responses have the request's
    own deadlines."""
    settings = get_settings()
    setup_observability(settings)
    app = create_app(settings)
    metrics = app.state.metrics
    protocol = with_header_timeout(
        settings.header_timeout_seconds, metrics.refused.labels(reason="header_timeout").inc
    )
    # What is loaded by now (modules, schemas, the app) lives as long as the process: out of the collector's
    # sight, so that the full collections that requests trigger do not walk it again and again.
    gc.collect()
    gc.freeze()
    uvicorn.run(
        app,
        host="0.0.0.0",
        port=settings.http_port,
        http=protocol,
        ws="none",  # no WebSocket route: an upgrade request is an ordinary (refused) request
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
        # Our JSON root handler only; uvicorn's access log would print paths with ids in them.
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=20,
    )
