"""`python -m gateway`: serve the REST API with uvicorn on 0.0.0.0:LIKENESS_HTTP_PORT, JSON logs."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.config import get_settings
from gateway.middleware import install_request_id_logging
from likeness.telemetry import setup_logging, setup_tracing


def main() -> None:
    settings = get_settings()
    setup_logging(settings.service_name, settings.log_level)
    install_request_id_logging()
    setup_tracing(settings.service_name, settings.otlp_endpoint)
    uvicorn.run(
        create_app(settings),
        host="0.0.0.0",
        port=settings.http_port,
        # Our JSON root handler only; uvicorn's access log would print paths with ids in them.
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=20,
    )


if __name__ == "__main__":
    main()
