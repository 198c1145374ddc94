"""Minimization at the source: what the client sends when it uploads a photo (issue 16, item 5).

The bytes are read where they arrive: a real HTTP server on loopback captures the request body the
client put on the wire, and exiftool reads each photo part of it. Then ingest's own check
(`ingest.sanitize`) runs on the prepared photos to show that preparing costs no accepted photo.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageOps

from ingest.faces import FaceAnalyzer
from ingest.limits import SanitizeLimits
from ingest.sanitize import sanitize
from ingest.verdicts import Accepted, SanitizeResult
from likeness_client import LikenessClient
from likeness_client.photo_prep import PhotoNotPrepared, prepare_photo
from likeness_dev.samples import PLANTED_SECRETS, CorpusFile, hostile_corpus, sample_photos

#: What exiftool may say about a prepared photo: the JPEG's structure, nothing the camera or a person put
#: there (the "System:" and "ExifTool:" groups describe the pipe and the tool, not the image).
STRUCTURAL_GROUPS = frozenset({"SourceFile", "ExifTool", "System", "File", "Composite", "JFIF"})


class Capture(BaseHTTPRequestHandler):
    """Records each request body as it arrived and answers like the gateway: every photo accepted."""

    bodies: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Capture.bodies.append((self.headers["Content-Type"], body))
        answer = json.dumps({"photos": [{"id": "pho_1", "status": "accepted"}]}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def capture_server(server_process: None) -> Iterator[str]:
    Capture.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def photo_parts(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """(file name, bytes) of each file part of a multipart/form-data body."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return [
        (part.get_filename() or "", part.get_payload(decode=True))
        for part in message.iter_parts()
        if part.get_filename()
    ]


def exif_tags(data: bytes) -> dict[str, Any]:
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.fail("exiftool is missing: apt-get install -y libimage-exiftool-perl", pytrace=False)
    completed = subprocess.run(
        [exiftool, "-json", "-a", "-u", "-G1", "-"], input=data, capture_output=True, check=True, timeout=60
    )
    [tags] = json.loads(completed.stdout)
    assert isinstance(tags, dict)
    return tags


def accepted_corpus() -> list[CorpusFile]:
    """The corpus files ingest accepts (photos with metadata, odd encodings)."""
    return [entry for entry in hostile_corpus() if entry.verdict == "accepted"]


def test_no_metadata_crosses_the_network(capture_server: str) -> None:
    corpus = accepted_corpus()
    with_metadata = {"gps-and-camera.jpg", "edited-with-old-thumbnail.jpg", "icc-profile.jpg", "phone.heic"}
    assert with_metadata <= {entry.name for entry in corpus}
    with LikenessClient(capture_server, "tok") as client:
        for entry in corpus:
            client.upload_photos("sub_1", [(entry.name, entry.data)])
    sent = [part for content_type, body in Capture.bodies for part in photo_parts(content_type, body)]
    assert len(sent) == len(corpus)
    for (name, data), entry in zip(sent, corpus, strict=True):
        assert data.startswith(b"\xff\xd8\xff"), name
        assert data.endswith(b"\xff\xd9"), name
        for secret in PLANTED_SECRETS:
            assert secret not in data, f"{entry.name}: {secret!r} was sent"
        for marker in (b"Exif\0\0", b"acsp", b"http://ns.adobe.com"):  # EXIF, an ICC profile, XMP
            assert marker not in data, f"{entry.name}: {marker!r} was sent"
        assert data.count(b"\xff\xd8") == 1, f"{entry.name}: a second JPEG (a thumbnail?) was sent"
        tags = exif_tags(data)
        extra = {key for key in tags if key.split(":")[0] not in STRUCTURAL_GROUPS}
        assert not extra, f"{entry.name}: exiftool found {sorted(extra)}"
        assert not any("GPS" in key or "Thumbnail" in key or "ICC" in key for key in tags), entry.name


def test_the_sideways_photo_arrives_upright(capture_server: str) -> None:
    [sideways] = [entry for entry in hostile_corpus() if entry.name == "sideways-with-orientation.jpg"]
    stored = Image.open(io.BytesIO(sideways.data)).convert("RGB")
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(sideways.data))).convert("RGB")
    with LikenessClient(capture_server, "tok") as client:
        client.upload_photos("sub_1", [(sideways.name, sideways.data)])
    [(_, data)] = photo_parts(*Capture.bodies[0])
    arrived = Image.open(io.BytesIO(data)).convert("RGB")
    assert arrived.size == upright.size
    # The photo is square: only the pixels tell upright from sideways.
    assert mean_difference(arrived, upright) < 4 < mean_difference(arrived, stored)


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    difference = ImageChops.difference(first, second).convert("L")
    return sum(index * count for index, count in enumerate(difference.histogram())) / (
        first.width * first.height
    )


def test_opting_out_sends_the_original(capture_server: str) -> None:
    [gps] = [entry for entry in hostile_corpus() if entry.name == "gps-and-camera.jpg"]
    with LikenessClient(capture_server, "tok") as client:
        client.upload_photos("sub_1", [(gps.name, gps.data)], prepare=False)
    [(_, data)] = photo_parts(*Capture.bodies[0])
    assert data == gps.data


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    made = FaceAnalyzer()
    made.warm_up()
    return made


#: What the client refuses to send: ingest would refuse it as well, for one of these reasons.
REFUSED_HERE = frozenset({"unsupported_format", "corrupt_image", "image_too_large"})


def verdict(result: SanitizeResult) -> str:
    return "accepted" if isinstance(result, Accepted) else str(result.reasons[0].code)


def test_preparing_changes_no_verdict_and_costs_no_accepted_photo(analyzer: FaceAnalyzer) -> None:
    """Every file of the hostile corpus (and the sample photos) gets from ingest, once prepared, the verdict
    it gets as sent originally; what the client refuses to send is what ingest refuses anyway."""
    limits = SanitizeLimits()
    photos = [(entry.name, entry.data, entry.verdict) for entry in hostile_corpus()]
    photos += [(name, data, "accepted") for name, data in sample_photos(4)]
    accepted = 0
    for name, data, expected in photos:
        try:
            prepared = prepare_photo(name, data)
        except PhotoNotPrepared:
            assert expected in REFUSED_HERE, f"{name}: refused here, but ingest would say {expected}"
            continue
        assert verdict(sanitize(prepared.data, limits, analyzer)) == expected, name
        accepted += expected == "accepted"
    assert accepted == sum(expected == "accepted" for _, _, expected in photos) > 4, "the accept rate"
