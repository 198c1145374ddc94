"""One trace follows a person's job through the whole system: gateway → ingest, trainer (gRPC) → NATS →
trainer worker, renderer (gRPC) → NATS → renderer worker.

The stack exports its spans over OTLP to a receiver in this test (OTLP/gRPC, the protocol the services'
exporter speaks, decoded with opentelemetry-proto). The requests carry a known W3C `traceparent`; every
service must then report spans of that one trace, linked into one tree under the caller's span.

The stack here has its own NATS/S3/OpenBao: a second stack on the shared servers would share the workers'
durable consumers, and a job could be run by a worker of the other stack (which exports nowhere).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
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
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any] = field(hash=False)


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
                        )
                    )
        with self._lock:
            self.spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]


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


@dataclass(frozen=True)
class TracedJob:
    trace_id: str
    caller_span_id: str
    subject_id: str
    training_id: str
    render_id: str


@pytest.fixture(scope="module")
def traced_job(traced_stack: DevStack) -> TracedJob:
    """A subject, two photos, a training and a render, each request carrying one `traceparent`."""
    trace_id, caller_span_id = secrets.token_hex(16), secrets.token_hex(8)
    traced = {"traceparent": f"00-{trace_id}-{caller_span_id}-01"}
    client = GatewayClient(traced_stack.gateway_url, traced_stack.mint_token())
    try:
        consent = {"purpose": "professional headshots", "policy_version": "2026-01"}
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
    return TracedJob(trace_id, caller_span_id, subject_id, training_id, render_id)


def _complete_trace(collector: Collector, job: TracedJob) -> list[ReceivedSpan]:
    """The job's spans once every expected service has reported and the tree is whole (spans arrive in
    batches, a parent sometimes after its children); the last state seen at the deadline otherwise."""
    deadline = time.monotonic() + SPAN_TIMEOUT
    while True:
        spans = collector.of_trace(job.trace_id)
        services = {span.service for span in spans}
        known = {span.span_id for span in spans} | {job.caller_span_id}
        if (services >= EXPECTED_SERVICES and all(s.parent_span_id in known for s in spans)) or (
            time.monotonic() > deadline
        ):
            return spans
        time.sleep(0.5)


def test_one_trace_spans_every_service(collector: tuple[Collector, str], traced_job: TracedJob) -> None:
    spans = _complete_trace(collector[0], traced_job)
    services = {span.service for span in spans}
    assert services >= EXPECTED_SERVICES, (
        f"missing from trace {traced_job.trace_id}: {EXPECTED_SERVICES - services}"
    )


def test_the_trace_is_one_tree_under_the_callers_span(
    collector: tuple[Collector, str], traced_job: TracedJob
) -> None:
    spans = _complete_trace(collector[0], traced_job)
    by_id = {span.span_id: span for span in spans}
    orphans = [
        s for s in spans if s.parent_span_id not in by_id and s.parent_span_id != traced_job.caller_span_id
    ]
    assert orphans == []
    roots = [s for s in spans if s.parent_span_id == traced_job.caller_span_id]
    assert roots, "no span continues the caller's traceparent"
    assert {root.service for root in roots} == {"gateway"}, "only the gateway is called by the client"

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
    spans = _complete_trace(collector[0], traced_job)
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
