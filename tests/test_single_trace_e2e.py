"""One trace follows each request of a person's job through the whole system: gateway → ingest, trainer
(gRPC) → NATS → trainer worker, renderer (gRPC) → NATS → renderer worker. The trace is our own.

The stack exports its spans over OTLP to a receiver in this test (OTLP/gRPC, the protocol the services'
exporter speaks, decoded with opentelemetry-proto). The requests carry a known W3C `traceparent`, a
`tracestate` and a `baggage`. The gateway must start a new trace for each request, its root span *linked*
to the caller's span (never its child: issue 15), and every service must report spans of those traces,
each one tree under the gateway's root. Nothing of the caller's context may reach NATS: a tap on every
subject of the stack's NATS (as its admin) checks each message's headers.

The stack here has its own NATS/S3/OpenBao: a second stack on the shared servers would share the workers'
durable consumers, and a job could be run by a worker of the other stack (which exports nowhere).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import nats
import pytest
from nats.aio.msg import Msg
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from likeness_dev.journey import GatewayClient
from likeness_dev.ports import LOOPBACK, free_port
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack

pytestmark = pytest.mark.slow

#: service.name of each process that handles a part of the job.
EXPECTED_SERVICES = {
    "gateway",
    "retention",
    "ingest",
    "trainer",
    "trainer-worker",
    "renderer",
    "renderer-worker",
}
SPAN_TIMEOUT = 60.0


@dataclass(frozen=True)
class ReceivedLink:
    trace_id: str
    span_id: str
    trace_state: str


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any] = field(hash=False)
    links: tuple[ReceivedLink, ...] = ()


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """A minimal OTLP trace receiver: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {kv.key: _value(kv.value) for kv in span.attributes}
                    received.append(
                        ReceivedSpan(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes=attributes,
                            links=tuple(
                                ReceivedLink(link.trace_id.hex(), link.span_id.hex(), link.trace_state)
                                for link in span.links
                            ),
                        )
                    )
        with self._lock:
            self.spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def linked_to(self, span_id: str) -> list[ReceivedSpan]:
        """Spans with a link to `span_id` (the gateway's roots of the requests that sent it)."""
        with self._lock:
            return [span for span in self.spans if any(link.span_id == span_id for link in span.links)]


@dataclass(frozen=True)
class TappedMessage:
    nats_subject: str
    headers: dict[str, str]
    data: bytes


class NatsTap:
    """Every message published on the stack's NATS, with its headers (a subscription to `>` as the admin,
    on an event loop of its own)."""

    def __init__(self, url: str) -> None:
        self.messages: list[TappedMessage] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._connection = asyncio.run_coroutine_threadsafe(self._connect(url), self._loop).result(30)

    async def _connect(self, url: str) -> Any:
        connection = await nats.connect(url)
        await connection.subscribe(">", cb=self._keep)
        return connection

    async def _keep(self, msg: Msg) -> None:
        with self._lock:
            self.messages.append(TappedMessage(msg.subject, dict(msg.headers or {}), msg.data))

    def seen(self) -> list[TappedMessage]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._connection.close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture(scope="module")
def collector(server_process: None) -> Iterator[tuple[Collector, str]]:
    receiver = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(f"{LOOPBACK}:{free_port()}")
    server.start()
    try:
        yield receiver, f"http://{LOOPBACK}:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture(scope="module")
def traced_stack(
    tmp_path_factory: pytest.TempPathFactory, collector: tuple[Collector, str], server_process: None
) -> Iterator[DevStack]:
    _, endpoint = collector
    started = DevStack.start(
        Path(tmp_path_factory.mktemp("traced")),
        progress=lambda line: print(f"[traced stack] {line}", flush=True),
        extra_env={
            "LIKENESS_OTLP_ENDPOINT": endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "200",  # export within a moment (the SDK's default waits 5 s)
            "LIKENESS_INFERENCE_STEPS": "4",
            "LIKENESS_MIN_PHOTOS_FOR_TRAINING": "2",
        },
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def nats_tap(traced_stack: DevStack) -> Iterator[NatsTap]:
    tap = NatsTap(traced_stack.infra.endpoints.nats_url)
    try:
        yield tap
    finally:
        tap.close()


@dataclass(frozen=True)
class TracedJob:
    trace_id: str
    caller_span_id: str
    #: What the caller sent besides its traceparent: must be found nowhere.
    caller_state: str
    caller_baggage: str
    subject_id: str
    training_id: str
    render_id: str

    #: The requests made with the caller's context: open the subject, upload, train, render.
    requests = 4


@pytest.fixture(scope="module")
def traced_job(traced_stack: DevStack, nats_tap: NatsTap) -> TracedJob:
    """A subject, two photos, a training and a render, each request carrying the caller's `traceparent`,
    `tracestate` and `baggage`."""
    trace_id, caller_span_id = secrets.token_hex(16), secrets.token_hex(8)
    caller_state, caller_baggage = (
        f"caller-state-{secrets.token_hex(6)}",
        f"caller-bag-{secrets.token_hex(6)}",
    )
    traced = {
        "traceparent": f"00-{trace_id}-{caller_span_id}-01",
        "tracestate": f"vendor={caller_state}",
        "baggage": f"user.email={caller_baggage}",
    }
    client = GatewayClient(traced_stack.gateway_url, traced_stack.mint_token())
    try:
        consent = {"purpose": "headshots", "policy_version": "2026-01"}
        subject = client.json(
            "POST", "/v1/subjects", expect=(201,), json={"consent": consent}, headers=traced
        )
        subject_id = subject["id"]
        files = [("file", (name, data, "image/jpeg")) for name, data in sample_photos(2)]
        photos = client.json("POST", f"/v1/subjects/{subject_id}/photos", files=files, headers=traced)
        assert all(photo["status"] == "accepted" for photo in photos["photos"]), photos
        path = f"/v1/subjects/{subject_id}/trainings"
        training_id = client.json("POST", path, expect=(202,), json={}, headers=traced)["id"]
        done = {"succeeded", "failed", "cancelled"}
        training = client.wait(
            f"/v1/trainings/{training_id}", lambda r: r["status"] in done, 300, print, "training"
        )
        assert training["status"] == "succeeded", training
        request = {"training_id": training_id, "styles": ["linkedin"], "images_per_style": 1, "seed": 7}
        path = f"/v1/subjects/{subject_id}/renders"
        render_id = client.json("POST", path, expect=(202,), json=request, headers=traced)["id"]
        render = client.wait(f"/v1/renders/{render_id}", lambda r: r["status"] in done, 300, print, "render")
        assert render["status"] == "succeeded", render
    finally:
        client.close()
    return TracedJob(
        trace_id, caller_span_id, caller_state, caller_baggage, subject_id, training_id, render_id
    )


def _complete_traces(collector: Collector, job: TracedJob) -> dict[str, list[ReceivedSpan]]:
    """The spans of each trace the gateway started for the caller's requests (by trace id), once every
    request's root has arrived, every expected service has reported and each tree is whole (spans arrive in
    batches, a parent sometimes after its children); the last state seen at the deadline otherwise."""
    deadline = time.monotonic() + SPAN_TIMEOUT
    while True:
        roots = collector.linked_to(job.caller_span_id)
        traces = {root.trace_id: collector.of_trace(root.trace_id) for root in roots}
        spans = [span for trace_spans in traces.values() for span in trace_spans]
        services = {span.service for span in spans}
        known = {span.span_id for span in spans} | {""}
        if (
            len(roots) >= job.requests
            and services >= EXPECTED_SERVICES
            and all(s.parent_span_id in known for s in spans)
        ) or time.monotonic() > deadline:
            return traces
        time.sleep(0.5)


def test_each_request_starts_a_new_trace_linked_to_the_callers_span(
    collector: tuple[Collector, str], traced_job: TracedJob
) -> None:
    traces = _complete_traces(collector[0], traced_job)
    roots = collector[0].linked_to(traced_job.caller_span_id)
    assert len(roots) == traced_job.requests, [root.name for root in roots]
    for root in roots:
        assert root.service == "gateway", "only the gateway takes the caller's context"
        assert root.parent_span_id == "", f"{root.name} is a child of the caller's span, not a new trace"
        assert root.trace_id != traced_job.trace_id
        [link] = root.links
        assert (link.trace_id, link.span_id) == (traced_job.trace_id, traced_job.caller_span_id)
        assert link.trace_state == "", "the caller's tracestate is not kept, not even on the link"
    assert len(traces) == traced_job.requests, "one new trace per request"
    assert collector[0].of_trace(traced_job.trace_id) == [], "no span of ours is in the caller's trace"


def test_the_traces_span_every_service(collector: tuple[Collector, str], traced_job: TracedJob) -> None:
    traces = _complete_traces(collector[0], traced_job)
    services = {span.service for spans in traces.values() for span in spans}
    assert services >= EXPECTED_SERVICES, f"missing from the job's traces: {EXPECTED_SERVICES - services}"


def test_each_trace_is_one_tree_under_the_gateways_root(
    collector: tuple[Collector, str], traced_job: TracedJob
) -> None:
    traces = _complete_traces(collector[0], traced_job)
    spans = [span for trace_spans in traces.values() for span in trace_spans]
    by_id = {span.span_id: span for span in spans}
    orphans = [s for s in spans if s.parent_span_id not in by_id and s.parent_span_id != ""]
    assert orphans == []
    for trace_spans in traces.values():
        roots = [s for s in trace_spans if s.parent_span_id == ""]
        assert len(roots) == 1, [root.name for root in roots]
        assert roots[0].service == "gateway", "only the gateway is called by the client"

    def ancestry(span: ReceivedSpan) -> list[str]:
        chain = []
        while span.parent_span_id in by_id:
            span = by_id[span.parent_span_id]
            chain.append(span.service)
        return chain

    # The workers' job spans descend from the serve role that queued them, which the gateway called.
    for worker, serve in (("trainer-worker", "trainer"), ("renderer-worker", "renderer")):
        jobs = [s for s in spans if s.service == worker]
        assert jobs, f"no span from {worker}"
        for job_span in jobs:
            chain = ancestry(job_span)
            assert serve in chain, f"{worker} span {job_span.name!r} is not under {serve}: {chain}"
            assert chain[-1] == "gateway"
    ingest = [s for s in spans if s.service == "ingest"]
    assert any(ancestry(s)[:1] == ["gateway"] for s in ingest), (
        "ingest's span is not a child of the gateway's call"
    )


def test_spans_name_routes_and_methods_never_ids(
    collector: tuple[Collector, str], traced_job: TracedJob
) -> None:
    spans = [span for spans in _complete_traces(collector[0], traced_job).values() for span in spans]
    gateway_names = {s.name for s in spans if s.service == "gateway" and s.attributes.get("http.route")}
    assert "POST /v1/subjects/{subject_id}/trainings" in gateway_names
    grpc_methods = {s.attributes.get("rpc.method") for s in spans if s.service == "ingest"}
    assert "SanitizePhoto" in grpc_methods
    with_paths = [s.name for s in spans if {"url.path", "url.query", "url.full"} & set(s.attributes)]
    assert with_paths == [], "request paths hold ids: spans must name the route template only"
    personal = traced_job.subject_id
    for span in spans:
        shown = [span.name, *map(str, span.attributes.values())]
        leaked = [key for key, value in span.attributes.items() if personal in str(value)]
        assert not any(personal in text for text in shown), f"{span.service}: {span.name} {leaked}"


def test_nothing_of_the_callers_context_reaches_nats(
    collector: tuple[Collector, str], traced_job: TracedJob, nats_tap: NatsTap
) -> None:
    """Every message on the stack's NATS while the job ran: its headers carry our traces' `traceparent`
    only, never the caller's trace id, tracestate or baggage (NATS keeps events for years)."""
    traces = _complete_traces(collector[0], traced_job)
    messages = nats_tap.seen()
    caller = (traced_job.trace_id, traced_job.caller_state, traced_job.caller_baggage)
    leaked = [
        (message.nats_subject, key)
        for message in messages
        for key, value in message.headers.items()
        if key.lower() in ("tracestate", "baggage") or any(text in key + value for text in caller)
    ]
    assert leaked == []
    in_data = [m.nats_subject for m in messages if any(text.encode() in m.data for text in caller)]
    assert in_data == []
    # The tap did see the job: events and work with traceparents of the gateway's new traces.
    carried = {
        message.headers["traceparent"].split("-")[1]
        for message in messages
        if message.nats_subject.startswith(("evt.", "job.")) and "traceparent" in message.headers
    }
    assert carried & set(traces), "no job or event message carried a trace the gateway started"
