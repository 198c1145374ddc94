"""Prometheus metrics of the gateway. Labels are route templates and statuses, never ids or tenants."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

#: Any other method is counted as "other", so a client cannot mint label values.
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
#: Why the edge refused a request before any work (`gateway.edge`, `gateway.http_protocol`): the only values
#: of `likeness_gateway_refused_total{reason}`, each created at 0 so rates and alerts read 0, not "no data".
REFUSAL_REASONS = (
    "overloaded",
    "body_too_large",
    "unauthenticated",
    "rate_limited",
    "too_many_streams",
    "too_many_exports",
    "header_timeout",
    "upload_timeout",
)

#: Outcomes of `likeness_gateway_ratelimit_sync_messages_total{outcome}`, each created at 0.
SYNC_OUTCOMES = ("sent", "unsent", "received", "stale", "malformed")


class Metrics:
    """One registry per app, so several apps (tests) never collide on the global one."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.requests = Counter(
            "likeness_gateway_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "likeness_gateway_request_duration_seconds",
            "Time to answer an HTTP request (to the last byte), by route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )

        self.event_streams = Gauge(
            "likeness_gateway_event_streams",
            "Server-Sent Event streams open now",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "likeness_gateway_rate_limited",
            "Requests refused with 429 by a rate bucket, by bucket kind (api, upload)",
            ["kind"],
            registry=self.registry,
        )
        self.refused = Counter(
            "likeness_gateway_refused",
            "Requests refused at the edge before any work was done for them, by reason",
            ["reason"],
            registry=self.registry,
        )
        for reason in REFUSAL_REASONS:
            self.refused.labels(reason=reason)
        self.in_flight = Gauge(
            "likeness_gateway_requests_in_flight",
            "Requests being answered now (probes excluded), against LIKENESS_MAX_CONCURRENT_REQUESTS",
            registry=self.registry,
        )
        # Rate-limit sync between replicas (`gateway.ratelimit_sync`): reports by outcome, and how late.
        self.ratelimit_sync_messages = Counter(
            "likeness_gateway_ratelimit_sync_messages",
            "Rate-limit reports between replicas: sent, received, unsent, or dropped as stale or malformed",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in SYNC_OUTCOMES:
            self.ratelimit_sync_messages.labels(outcome=outcome)
        self.ratelimit_sync_lag = Histogram(
            "likeness_gateway_ratelimit_sync_lag_seconds",
            "From a replica's report to its arrival here (wall clocks of two pods)",
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.ratelimit_sync_peers = Gauge(
            "likeness_gateway_ratelimit_sync_peers",
            "Other gateway replicas whose rate-limit reports arrived in the last 10 s",
            registry=self.registry,
        )
        self.ratelimit_sync_unreported = Gauge(
            "likeness_gateway_ratelimit_sync_unreported",
            "Spendings never reported because too many buckets were waiting (since start)",
            registry=self.registry,
        )
        self.idempotent_replays = Counter(
            "likeness_gateway_idempotent_replays",
            "Requests answered from a stored idempotency record",
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._children.get((method, route, status))
        if children is None:
            children = self._bind(method, route, status)
        requests, latency = children
        requests.inc()
        latency.observe(seconds)

    def _bind(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        """The label children of a (method, route, status), looked up once: routes are templates and
        methods a fixed set, so there are few of them."""
        label = method if method in _METHODS else "other"
        children = (
            self.requests.labels(method=label, route=route, status=str(status)),
            self.latency.labels(method=label, route=route),
        )
        if method in _METHODS:  # a made-up method is not kept: a client could fill the dict with them
            self._children[(method, route, status)] = children
        return children

    def render(self) -> bytes:
        return generate_latest(self.registry)
