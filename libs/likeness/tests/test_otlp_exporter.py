"""The OTLP exporter speaks TLS exactly when the endpoint says `https://`, whatever OTEL_* variables say
(issue 15: production refuses plaintext OTLP, and the environment must not turn TLS off behind it)."""

from __future__ import annotations

import pytest

from likeness.telemetry import otlp_exporter


def _is_plaintext(endpoint: str) -> bool:
    # The exporter's own record of the channel it opens (no public accessor): insecure_channel or secure.
    return bool(getattr(otlp_exporter(endpoint), "_insecure"))  # noqa: B009 - private, not typed


def test_https_is_tls_even_when_the_environment_asks_for_plaintext(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true")
    assert not _is_plaintext("https://otel.example:4317")


def test_http_is_plaintext_whatever_the_environment_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "false")
    assert _is_plaintext("http://127.0.0.1:4317")


@pytest.mark.parametrize("endpoint", ["otel.example:4317", "grpc://otel.example:4317", "dns:///otel:4317"])
def test_an_endpoint_without_http_or_https_is_refused(endpoint: str) -> None:
    with pytest.raises(ValueError, match="https://host:port"):
        otlp_exporter(endpoint)
