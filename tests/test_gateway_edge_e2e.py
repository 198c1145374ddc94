"""Limits before work, at the real edge: the stack's gateway process (`python -m gateway serve`, uvicorn with
`gateway.http_protocol`) in front of the real services, NATS, S3 and OpenBao.

- A 64 MiB body without a token is refused (413 for a declared length, 401 when chunked) in under a
  second, and the gateway process's memory stays flat; with a token, a chunked body is cut at the limit.
- A client sending its headers one byte every 5 s is disconnected within the header timeout.
- A trickled upload ends at its deadline (408) and its ingest call ends with it, freeing its slot, while
  another tenant's upload meanwhile succeeds; ingest itself ends a receive past its own deadline, so a
  caller sending no deadline (a compromised gateway) cannot hold its slots.
- One token opening 1,000 event streams gets the cap, not 1,000 streams.

The module restarts the stack's gateway with a short upload deadline and rates high enough that the cap,
not the rate limit, is what a thousand requests meet; every other limit keeps its default. The stack's
processes are restored as they were afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from likeness.grpc_tls import ClientTls
from likeness.grpc_user_tokens import token_metadata
from likeness.rpc_errors import status_lost_to_a_late_write
from likeness.v1 import ingest_pb2, ingest_pb2_grpc
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_dev.tokens import ALL_SCOPES, mint_dev_token

MIB = 1024 * 1024
UPLOAD_DEADLINE = 10.0  # LIKENESS_STREAM_TIMEOUT_SECONDS of the restarted gateway
HEADER_TIMEOUT = 10.0  # the default of LIKENESS_HEADER_TIMEOUT_SECONDS
STREAM_CAP = 8  # the default of LIKENESS_MAX_EVENT_STREAMS_PER_CALLER
INGEST_RECEIVE = 3.0  # LIKENESS_UPLOAD_RECEIVE_SECONDS of the restarted ingest
#: Bounds the issue states get generous margins: the machine has 2 slow cores shared with other work.
MARGIN = 4.0
CONSENT = {"consent": {"purpose": "headshots", "policy_version": "2026-01"}}
BOUNDARY = "edge-boundary"


@contextlib.contextmanager
def _restarted(stack: DevStack, name: str, env: dict[str, str]) -> Iterator[None]:
    """The stack's process `name` restarted with these settings, and restarted as it was afterwards."""
    process = stack.services[name].process
    original = dict(process.env or {})
    stack.stop_service(name)
    process.env = original | env
    try:
        stack.start_service(name)
        yield
    finally:
        stack.stop_service(name)
        process.env = original
        stack.start_service(name)


@pytest.fixture(scope="module")
def edge(stack: DevStack) -> Iterator[DevStack]:
    settings = {
        "LIKENESS_STREAM_TIMEOUT_SECONDS": str(UPLOAD_DEADLINE),
        "LIKENESS_RATE_LIMIT_PER_SECOND": "1000",
        "LIKENESS_RATE_LIMIT_BURST": "2000",
        "LIKENESS_TENANT_RATE_LIMIT_PER_SECOND": "1000",
        "LIKENESS_TENANT_RATE_LIMIT_BURST": "2000",
    }
    with _restarted(stack, "gateway", settings):
        yield stack


def _port(stack: DevStack) -> int:
    port = stack.services["gateway"].http_port
    assert port is not None
    return port


def _tenant_client(stack: DevStack, prefix: str) -> tuple[httpx.Client, str]:
    tenant = f"{prefix}-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {stack.mint_token(tenant=tenant)}"}
    return httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=60), tenant


def _status_field(pid: int, field: str) -> int:
    """A memory figure of /proc/<pid>/status, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


class PeakMemory:
    """The highest resident memory of a process while a block runs: its high-water mark (VmHWM), reset
    before the block (`/proc/<pid>/clear_refs`), and sampled every few milliseconds besides, so that memory
    taken and given back within the request counts too."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = 0
        self.peak = 0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self.before = _status_field(self.pid, "VmRSS")
        with contextlib.suppress(OSError):  # resetting the mark needs the process's owner
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.peak = self.before
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._sampler.join()
        self.peak = max(self.peak, _status_field(self.pid, "VmHWM"), _status_field(self.pid, "VmRSS"))

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, _status_field(self.pid, "VmRSS"))

    @property
    def grown(self) -> int:
        return self.peak - self.before


def _until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Whatever the server sends on `sock` until it closes the connection (within `timeout`)."""
    sock.settimeout(timeout)
    received = b""
    with contextlib.suppress(ConnectionResetError):  # a reset: it closed with our body unread
        while chunk := sock.recv(65536):
            received += chunk
    return received


def _status(received: bytes) -> int:
    assert received.startswith(b"HTTP/1.1 "), received[:200]
    return int(received[9:12])


class Sender(threading.Thread):
    """Sends `total` bytes of body (raw, or as chunked encoding) until done or the server closes."""

    def __init__(self, sock: socket.socket, total: int, chunked: bool) -> None:
        super().__init__(daemon=True)
        self.sock, self.total, self.chunked = sock, total, chunked
        self.sent = 0

    def run(self) -> None:
        block = b" " * MIB
        try:
            while self.sent < self.total:
                data = block if not self.chunked else b"%x\r\n" % len(block) + block + b"\r\n"
                self.sock.sendall(data)
                self.sent += len(block)
            if self.chunked:
                self.sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed the connection: what the test expects


def _send_big_body(stack: DevStack, chunked: bool, token: str | None) -> tuple[int, bytes, float, int]:
    """POST /v1/subjects with a 64 MiB body; (status, answer, seconds until the status line, bytes sent)."""
    head = (
        "POST /v1/subjects HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        + ("Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {64 * MIB}\r\n")
        + (f"Authorization: Bearer {token}\r\n" if token else "")
        + "\r\n"
    )
    with socket.create_connection(("127.0.0.1", _port(stack))) as sock:
        started = time.monotonic()
        sock.sendall(head.encode())
        sender = Sender(sock, 64 * MIB, chunked)
        sender.start()
        sock.settimeout(5)
        received = sock.recv(65536)  # the status line, as soon as it comes
        seconds = time.monotonic() - started
        received += _until_closed(sock, 10)
        sender.join(10)
    return _status(received), received, seconds, sender.sent


@pytest.mark.parametrize(
    ("chunked", "with_token", "status"),
    [(False, False, 413), (True, False, 401), (True, True, 413)],
    ids=["declared-length-no-token", "chunked-no-token", "chunked-with-token"],
)
def test_a_64_mib_body_is_refused_at_once_and_the_gateway_memory_stays_flat(
    edge: DevStack, chunked: bool, with_token: bool, status: int
) -> None:
    token = edge.mint_token() if with_token else None
    pid = edge.services["gateway"].process.pid
    assert pid is not None
    _send_big_body(edge, chunked, token)  # once first: lazily imported code and buffers are in place
    with PeakMemory(pid) as memory:
        answered, received, seconds, sent = _send_big_body(edge, chunked, token)
    assert memory.grown < 16 * MIB, f"the gateway grew by {memory.grown / MIB:.1f} MiB at its peak"
    assert answered == status, received[:400]
    assert seconds < 1.0, f"refused after {seconds:.2f} s"
    assert b"connection: close" in received.lower()
    assert sent < 64 * MIB, "the connection was closed before the body was sent whole"


def test_headers_sent_a_byte_every_5_s_are_cut_off_within_the_header_timeout(edge: DevStack) -> None:
    request = b"GET /v1/styles HTTP/1.1\r\nHost: gateway\r\n\r\n"
    with socket.create_connection(("127.0.0.1", _port(edge))) as sock:
        started = time.monotonic()
        sock.settimeout(0.2)
        received = b""
        closed = False
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            until = time.monotonic() + 5
            while time.monotonic() < until and not closed:
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                except ConnectionResetError:
                    chunk = b""
                received += chunk
                closed = not chunk
            if closed:
                break
        elapsed = time.monotonic() - started
    assert closed, "the connection was still open when the whole request had been sent"
    assert elapsed <= HEADER_TIMEOUT + MARGIN, f"closed after {elapsed:.1f} s"
    assert received.startswith(b"HTTP/1.1 408"), received


def _handled(stack: DevStack, codes: set[str]) -> float:
    """SanitizePhoto calls ingest has finished with one of these gRPC codes."""
    text = httpx.get(f"{stack.services['ingest'].metrics_url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "likeness_grpc_server_handled_total"
                and labels.get("grpc_method") == "SanitizePhoto"
                and labels.get("grpc_code") in codes
            ):
                total += sample.value
    return total


def _multipart(name: str, data: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def test_a_trickled_upload_ends_at_its_deadline_and_frees_its_slot_while_another_tenant_uploads(
    edge: DevStack,
) -> None:
    slow, _ = _tenant_client(edge, "edge-slow")
    fast, _ = _tenant_client(edge, "edge-fast")
    with slow, fast:
        slow_subject = slow.post("/v1/subjects", json=CONSENT).json()["id"]
        fast_subject = fast.post("/v1/subjects", json=CONSENT).json()["id"]
        [(name, photo)] = sample_photos(1)
        ended = {"CANCELLED", "DEADLINE_EXCEEDED"}
        ended_before = _handled(edge, ended)

        body = _multipart("slow.jpg", photo)
        head = (
            f"POST /v1/subjects/{slow_subject}/photos HTTP/1.1\r\nHost: gateway\r\n"
            f"Authorization: {slow.headers['Authorization']}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", _port(edge))) as sock:
            started = time.monotonic()
            sock.sendall(head + body[:400])  # the part's head and the photo's first bytes, then a trickle

            def trickle() -> None:
                with contextlib.suppress(OSError):
                    for byte in body[400:]:
                        sock.sendall(bytes([byte]))
                        time.sleep(0.5)

            threading.Thread(target=trickle, daemon=True).start()
            # Meanwhile another tenant's upload goes through the same gateway and ingest.
            files = [("file", (name, photo, "image/jpeg"))]
            uploaded = fast.post(f"/v1/subjects/{fast_subject}/photos", files=files)
            assert uploaded.status_code == 200, uploaded.text
            assert uploaded.json()["photos"][0]["status"] == "accepted"
            assert time.monotonic() - started < UPLOAD_DEADLINE, "it succeeded while the trickle went on"

            received = _until_closed(sock, UPLOAD_DEADLINE + MARGIN)
            elapsed = time.monotonic() - started
        assert _status(received) == 408, received[:400]
        assert b'"upload_timeout"' in received
        assert b"connection: close" in received.lower()
        assert elapsed <= UPLOAD_DEADLINE + MARGIN, f"answered after {elapsed:.1f} s"
        # Its ingest call ended with it (the call's end is where ingest gives its upload slot back).
        deadline = time.monotonic() + 10
        while _handled(edge, ended) < ended_before + 1:
            assert time.monotonic() < deadline, "ingest still holds the trickled upload"
            time.sleep(0.2)
        assert slow.get(f"/v1/subjects/{slow_subject}/photos").json()["photos"] == []


async def test_ingest_ends_a_receive_past_its_own_deadline_for_a_caller_that_sets_none(
    edge: DevStack,
) -> None:
    """A compromised gateway sends no deadline and trickles: ingest (one upload slot here) ends the receive
    after its own LIKENESS_UPLOAD_RECEIVE_SECONDS, and the upload waiting for the slot then runs."""
    first, first_tenant = _tenant_client(edge, "edge-hold")
    second, second_tenant = _tenant_client(edge, "edge-wait")
    with first, second:
        subjects = [client.post("/v1/subjects", json=CONSENT).json()["id"] for client in (first, second)]
    [(_, photo)] = sample_photos(1)
    settings = {
        "LIKENESS_MAX_CONCURRENT_UPLOADS": "1",
        "LIKENESS_UPLOAD_RECEIVE_SECONDS": str(INGEST_RECEIVE),
    }
    with _restarted(edge, "ingest", settings):
        await _hold_then_wait(edge, (first_tenant, subjects[0]), (second_tenant, subjects[1]), photo)


async def _hold_then_wait(
    stack: DevStack, holder: tuple[str, str], waiter: tuple[str, str], photo: bytes
) -> None:
    channel = ClientTls(stack.tls_dir("gateway")).channel(stack.services["ingest"].address, "ingest")
    stub = ingest_pb2_grpc.IngestServiceStub(channel)

    def metadata(tenant: str) -> Any:
        return token_metadata(mint_dev_token(stack.jwt_secret, tenant, ALL_SCOPES))

    def header(tenant: str, subject: str) -> ingest_pb2.SanitizePhotoRequest:
        upload = ingest_pb2.PhotoUploadHeader(tenant=tenant, subject_id=subject, content_type="image/jpeg")
        return ingest_pb2.SanitizePhotoRequest(header=upload)

    async def trickle() -> Any:
        yield header(*holder)
        for byte in photo:
            yield ingest_pb2.SanitizePhotoRequest(chunk=bytes([byte]))
            await asyncio.sleep(0.5)

    async def whole() -> Any:
        yield header(*waiter)
        yield ingest_pb2.SanitizePhotoRequest(chunk=photo)

    try:
        started = time.monotonic()
        held = stub.SanitizePhoto(trickle(), metadata=metadata(holder[0]))  # no deadline at all
        await asyncio.sleep(1.0)  # it has the only slot
        waiting = asyncio.ensure_future(
            stub.SanitizePhoto(whole(), metadata=metadata(waiter[0]), timeout=120)
        )
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(held, INGEST_RECEIVE + 3 * MARGIN)  # a TimeoutError fails the test
        held_for = time.monotonic() - started
        # Ingest's own deadline ended it; grpc.aio may report that as its INTERNAL when the trickle had a
        # byte in flight at that moment (likeness.rpc_errors.status_lost_to_a_late_write).
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED or status_lost_to_a_late_write(
            ended.value
        )
        assert held_for <= INGEST_RECEIVE + MARGIN, f"held its slot {held_for:.1f} s"
        assert not waiting.done(), "the other upload waited for the slot"
        answer = await waiting
        assert answer.photo.status == ingest_pb2.PHOTO_STATUS_ACCEPTED
    finally:
        await channel.close()


async def test_one_token_opening_1000_event_streams_gets_the_cap(edge: DevStack) -> None:
    client, _ = _tenant_client(edge, "edge-sse")
    with client:
        subject = client.post("/v1/subjects", json=CONSENT).json()["id"]
        files = [("file", (name, data, "image/jpeg")) for name, data in sample_photos(2)]
        assert client.post(f"/v1/subjects/{subject}/photos", files=files).status_code == 200
        # Long enough to stay unfinished for the whole test; cancelled at the end.
        training = client.post(f"/v1/subjects/{subject}/trainings", json={"steps": 10_000}).json()["id"]
        try:
            opened, refusals = await _open_streams(
                _port(edge), client.headers["Authorization"], training, attempts=1000
            )
        finally:
            client.post(f"/v1/trainings/{training}/cancel")
    assert opened == STREAM_CAP
    assert refusals == {"too_many_streams": 1000 - STREAM_CAP}


async def _open_streams(
    port: int, authorization: str, training: str, attempts: int
) -> tuple[int, dict[str, int]]:
    request = (
        f"GET /v1/trainings/{training}/events HTTP/1.1\r\nHost: gateway\r\n"
        f"Authorization: {authorization}\r\n\r\n"
    ).encode()
    open_streams: list[asyncio.StreamWriter] = []
    refusals: dict[str, int] = {}

    async def attempt() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
        if head.startswith(b"HTTP/1.1 200"):
            await asyncio.wait_for(reader.readuntil(b"\n\n"), 60)  # its first event: the stream is live
            open_streams.append(writer)
            return
        body = await asyncio.wait_for(reader.read(65536), 60)
        code = (
            body.split(b'"code":', 1)[1].split(b'"')[1].decode() if b'"code":' in body else head[:12].decode()
        )
        refusals[code] = refusals.get(code, 0) + 1
        writer.close()

    try:
        for start in range(0, attempts, 50):  # 50 at a time, the open ones kept open throughout
            await asyncio.gather(*(attempt() for _ in range(start, min(start + 50, attempts))))
        streams = len(open_streams)
    finally:
        for writer in open_streams:
            writer.close()
    return streams, refusals
