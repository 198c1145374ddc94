"""Photo uploads stream from the request body into ingest, within limits, and never through a file."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from gateway.routes.photos import rejection_status
from likeness.ids import new_id
from likeness.rpc_errors import abort
from likeness.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc

BOUNDARY = "likeness-test-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
JPEG = b"\xff\xd8\xff\xe0"
CHUNK_LIMIT = 256 * 1024
MAX_UPLOAD_BYTES = 1024 * 1024  # as conftest configures the shared client
MAX_FILES = 4


def photo(size: int, fill: int = 7) -> bytes:
    return JPEG + bytes([fill]) * (size - len(JPEG))


def error_code(response: Any) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def test_several_files_are_streamed_to_ingest_in_bounded_chunks(
    client, auth, new_subject, multipart, fakes
) -> None:
    subject = await new_subject()
    files = [("front.jpg", photo(600_000, 1)), ("side.jpg", photo(300_000, 2)), ("notes.txt", b"not a photo")]
    before = len(fakes.ingest.uploads)
    response = await client.post(
        f"/v1/subjects/{subject}/photos", content=multipart(files), headers={**auth(), **MULTIPART}
    )
    assert response.status_code == 200, response.text
    answered = response.json()["photos"]
    assert [p["filename"] for p in answered] == ["front.jpg", "side.jpg", "notes.txt"]
    assert [p["status"] for p in answered] == ["accepted", "accepted", "rejected"]
    assert answered[2]["reasons"] == [{"code": "unsupported_format", "message": "Not a photo we can read."}]
    assert answered[0]["width"] == 512
    assert answered[2]["width"] is None
    assert all(p["id"].startswith("pho_") for p in answered)

    received = fakes.ingest.uploads[before:]
    assert len(received) == 3
    for upload, (filename, data) in zip(received, files, strict=True):
        assert (upload.header.tenant, upload.header.subject_id) == ("acme", subject)
        assert upload.header.content_type == "image/jpeg"
        assert filename.encode() not in upload.header.SerializeToString()
        assert all(0 < len(chunk) <= CHUNK_LIMIT for chunk in upload.chunks)
        assert b"".join(upload.chunks) == data
    assert len(received[0].chunks) == 3  # 600 kB in 256 KiB chunks

    listed = await client.get(f"/v1/subjects/{subject}/photos", headers=auth())
    assert listed.status_code == 200
    assert [p["id"] for p in listed.json()["photos"]] == [p["id"] for p in answered]
    assert "filename" not in listed.json()["photos"][0]


async def test_chunks_reach_ingest_before_the_upload_has_finished(
    client, auth, new_subject, multipart, fakes
) -> None:
    """If the gateway buffered the body, ingest would see nothing until the end and this would time out."""
    subject = await new_subject()
    body = multipart([("big.jpg", photo(900_000))])
    split = 600_000
    fakes.ingest.chunk_arrived.clear()

    async def slow_body() -> AsyncIterator[bytes]:
        yield body[:split]
        await asyncio.wait_for(fakes.ingest.chunk_arrived.wait(), timeout=10)
        yield body[split:]

    response = await client.post(
        f"/v1/subjects/{subject}/photos", content=slow_body(), headers={**auth(), **MULTIPART}
    )
    assert response.status_code == 200, response.text
    assert response.json()["photos"][0]["status"] == "accepted"


async def test_a_file_over_the_limit_is_refused_while_streaming(
    client, auth, new_subject, multipart, fakes
) -> None:
    subject = await new_subject()
    before = len(fakes.ingest.uploads)
    files = [("ok.jpg", photo(1000)), ("huge.jpg", photo(MAX_UPLOAD_BYTES + 1))]
    response = await client.post(
        f"/v1/subjects/{subject}/photos", content=multipart(files), headers={**auth(), **MULTIPART}
    )
    assert response.status_code == 413
    assert error_code(response) == "file_too_large"
    # The calls are cancelled, so ingest may have seen some of it, but never more than the limit.
    assert all(sum(map(len, upload.chunks)) <= MAX_UPLOAD_BYTES for upload in fakes.ingest.uploads[before:])


async def test_a_file_of_exactly_the_limit_is_accepted(client, auth, new_subject, multipart) -> None:
    subject = await new_subject()
    response = await client.post(
        f"/v1/subjects/{subject}/photos",
        content=multipart([("max.jpg", photo(MAX_UPLOAD_BYTES))]),
        headers={**auth(), **MULTIPART},
    )
    assert response.status_code == 200, response.text


async def test_too_many_files_are_refused(client, auth, new_subject, multipart, fakes) -> None:
    subject = await new_subject()
    before = len(fakes.ingest.uploads)
    files = [(f"{n}.jpg", photo(100)) for n in range(MAX_FILES + 1)]
    response = await client.post(
        f"/v1/subjects/{subject}/photos", content=multipart(files), headers={**auth(), **MULTIPART}
    )
    assert response.status_code == 413
    assert error_code(response) == "too_many_files"
    # The extra file never reached ingest (the others were cancelled, so some may not have either).
    assert len(fakes.ingest.uploads) - before <= MAX_FILES


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b'{"file": "x"}', "application/json"), (b"file=x", "application/x-www-form-urlencoded"), (b"x", None)],
)
async def test_a_body_that_is_not_multipart_is_unsupported(
    client, auth, new_subject, content, content_type
) -> None:
    subject = await new_subject()
    headers = auth() if content_type is None else {**auth(), "Content-Type": content_type}
    response = await client.post(f"/v1/subjects/{subject}/photos", content=content, headers=headers)
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"


async def test_a_form_without_file_parts_has_no_files(client, auth, new_subject) -> None:
    subject = await new_subject()
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="comment"\r\n\r\nhello\r\n--{BOUNDARY}--\r\n'
    ).encode()
    response = await client.post(
        f"/v1/subjects/{subject}/photos", content=body, headers={**auth(), **MULTIPART}
    )
    assert response.status_code == 400
    assert error_code(response) == "no_files"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'--likeness-test-boundary\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc', MULTIPART),
        (b"garbage without any boundary", MULTIPART),
        (b"", {"Content-Type": "multipart/form-data"}),
    ],
    ids=["truncated", "garbage", "no-boundary"],
)
async def test_a_malformed_multipart_body_is_a_bad_request(
    client, auth, new_subject, body, content_type
) -> None:
    subject = await new_subject()
    response = await client.post(
        f"/v1/subjects/{subject}/photos", content=body, headers={**auth(), **content_type}
    )
    assert response.status_code == 400
    assert error_code(response) == "invalid_multipart"


async def test_a_declared_length_beyond_every_limit_is_refused_before_reading(
    client, auth, new_subject
) -> None:
    subject = await new_subject()

    async def endless() -> AsyncIterator[bytes]:
        raise AssertionError("the body must not be read")
        yield b""  # pragma: no cover

    too_long = str(MAX_FILES * MAX_UPLOAD_BYTES + 2 * 1024 * 1024)
    response = await client.post(
        f"/v1/subjects/{subject}/photos",
        content=endless(),
        headers={**auth(), **MULTIPART, "Content-Length": too_long},
    )
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"


class WriteOpens:
    """Records files opened for writing (an audit hook cannot be removed, so this one can be switched off)."""

    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def __init__(self) -> None:
        self.active = False
        self.seen: list[str] = []
        sys.addaudithook(self.hook)

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or bool(
                (flags or 0) & self.WRITE_FLAGS
            )
            if writes:
                self.seen.append(str(path))
        elif event in ("tempfile.mkstemp", "tempfile.mkdtemp", "os.mkdir"):
            self.seen.append(f"{event}:{args[0]}")


@pytest.fixture(scope="module")
def write_opens() -> WriteOpens:
    return WriteOpens()


async def test_an_upload_never_opens_a_file_for_writing(make_client, auth, multipart, write_opens) -> None:
    # The hook must be able to fail: a temporary file is exactly what Starlette's form parsing would create.
    write_opens.active = True
    with tempfile.TemporaryFile():
        pass
    write_opens.active = False
    assert write_opens.seen, "the audit hook does not see files opened for writing"
    write_opens.seen.clear()

    # Files well past Starlette's 1 MB spooling threshold, in a gateway that allows them.
    async with make_client(max_upload_bytes=4 * 1024 * 1024) as big_client:
        body = {"consent": {"purpose": "headshots", "policy_version": "1"}}
        subject = (await big_client.post("/v1/subjects", json=body, headers=auth())).json()["id"]
        content = multipart([("a.jpg", photo(3 * 1024 * 1024)), ("b.jpg", photo(2 * 1024 * 1024))])
        write_opens.active = True
        try:
            response = await big_client.post(
                f"/v1/subjects/{subject}/photos", content=content, headers={**auth(), **MULTIPART}
            )
        finally:
            write_opens.active = False
    assert response.status_code == 200, response.text
    assert [p["status"] for p in response.json()["photos"]] == ["accepted", "accepted"]
    assert write_opens.seen == []


async def test_uploads_to_an_erased_subject_are_gone(client, auth, world, multipart) -> None:
    response = await client.post(
        f"/v1/subjects/{world.erased_subject}/photos",
        content=multipart([("a.jpg", photo(100))]),
        headers={**auth(), **MULTIPART},
    )
    assert response.status_code == 410
    assert error_code(response) == "subject_erased"
    response = await client.get(f"/v1/subjects/{world.erased_subject}/photos", headers=auth())
    assert response.status_code == 410


async def test_filenames_are_cleaned_and_kept_out_of_ingest(client, auth, new_subject, fakes) -> None:
    subject = await new_subject()
    name = "C:\\Users\\ana\\Pictures\\año-selfie.jpg"
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: image/heic\r\n\r\n"
        ).encode()
        + photo(10)
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    response = await client.post(
        f"/v1/subjects/{subject}/photos", content=body, headers={**auth(), **MULTIPART}
    )
    assert response.status_code == 200, response.text
    assert response.json()["photos"][0]["filename"] == "año-selfie.jpg"
    header = fakes.ingest.uploads[-1].header
    assert header.content_type == "image/heic"
    assert b"selfie" not in header.SerializeToString()


async def test_an_upload_with_no_usable_photo_is_a_4xx_naming_the_reason(
    client, auth, new_subject, multipart
) -> None:
    subject = await new_subject()
    files = [("drawing.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>"), ("notes.txt", b"not a photo")]
    response = await client.post(
        f"/v1/subjects/{subject}/photos", content=multipart(files), headers={**auth(), **MULTIPART}
    )
    assert response.status_code == 415, response.text
    assert error_code(response) == "unsupported_format"
    assert [p["status"] for p in response.json()["photos"]] == ["rejected", "rejected"]


# --- how ingest's answers become HTTP statuses ------------------------------------------------------------


class ScriptedIngest(ingest_pb2_grpc.IngestServiceServicer):
    """Answers each file as its bytes say: `verdict:<code>` is rejected with that reason, `refuse:<code>`
    is refused as a whole (FAILED_PRECONDITION with that machine code), anything else is accepted."""

    async def SanitizePhoto(self, request_iterator: AsyncIterator[Any], context: Any) -> Any:
        header, data = None, b""
        async for message in request_iterator:
            if header is None:
                header = message.header
            else:
                data += message.chunk
        assert header is not None
        if data.startswith(b"refuse:"):
            code = data.removeprefix(b"refuse:").decode()
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, code, f"Refused as {code}.")
        photo = ingest_pb2.Photo(id=new_id("pho"), tenant=header.tenant, subject_id=header.subject_id)
        if data.startswith(b"verdict:"):
            code = data.removeprefix(b"verdict:").decode()
            photo.status = ingest_pb2.PHOTO_STATUS_REJECTED
            photo.reasons.append(common_pb2.Reason(code=code, message=f"Rejected as {code}."))
            photo.scores["sharpness"] = 0.01
        else:
            photo.status = ingest_pb2.PHOTO_STATUS_ACCEPTED
            photo.width = photo.height = 512
        return ingest_pb2.SanitizePhotoResponse(photo=photo)


async def open_subject(client: Any, auth: Any) -> str:
    body = {"consent": {"purpose": "headshots", "policy_version": "2025-01"}}
    response = await client.post("/v1/subjects", json=body, headers=auth())
    assert response.status_code == 201, response.text
    subject_id: str = response.json()["id"]
    return subject_id


@pytest_asyncio.fixture(scope="module")
async def scripted_ingest(add_backend_port: Any) -> AsyncIterator[str]:
    server = grpc.aio.server()
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(ScriptedIngest(), server)
    port = add_backend_port(server, "ingest")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


@pytest.mark.parametrize(
    ("first", "status"),
    [
        ("file_too_large", 413),
        ("unsupported_format", 415),
        ("corrupt_image", 422),
        ("no_face", 422),
        ("too_blurry", 422),
        ("duplicate", 422),
        ("different_person", 422),
    ],
)
async def test_an_upload_rejected_whole_answers_the_status_of_its_first_reason(
    make_client, auth, multipart, scripted_ingest, first, status
) -> None:
    async with make_client(ingest_addr=scripted_ingest) as client:
        subject = await open_subject(client, auth)
        files = [("a.jpg", f"verdict:{first}".encode()), ("b.jpg", b"verdict:too_dark")]
        response = await client.post(
            f"/v1/subjects/{subject}/photos", content=multipart(files), headers={**auth(), **MULTIPART}
        )
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == {
        "code": first,
        "message": f"Rejected as {first}.",
        "request_id": response.headers["X-Request-Id"],
    }
    assert [p["reasons"][0]["code"] for p in body["photos"]] == [first, "too_dark"]
    assert body["photos"][0]["scores"] == {"sharpness": 0.01}, "the scores coach the person"


async def test_an_upload_with_one_usable_photo_is_a_success_listing_every_verdict(
    make_client, auth, multipart, scripted_ingest
) -> None:
    async with make_client(ingest_addr=scripted_ingest) as client:
        subject = await open_subject(client, auth)
        files = [("a.jpg", b"verdict:duplicate"), ("b.jpg", JPEG + b"fine")]
        response = await client.post(
            f"/v1/subjects/{subject}/photos", content=multipart(files), headers={**auth(), **MULTIPART}
        )
    assert response.status_code == 200, response.text
    assert [p["status"] for p in response.json()["photos"]] == ["rejected", "accepted"]


@pytest.mark.parametrize(
    ("refusal", "status"), [("too_many_photos", 409), ("subject_erased", 410), ("failed_precondition", 409)]
)
async def test_a_file_ingest_refuses_whole_answers_for_the_request(
    make_client, auth, multipart, scripted_ingest, refusal, status
) -> None:
    async with make_client(ingest_addr=scripted_ingest) as client:
        subject = await open_subject(client, auth)
        files = [("a.jpg", JPEG + b"fine"), ("b.jpg", f"refuse:{refusal}".encode())]
        response = await client.post(
            f"/v1/subjects/{subject}/photos", content=multipart(files), headers={**auth(), **MULTIPART}
        )
    assert response.status_code == status, response.text
    assert error_code(response) == refusal
    if refusal == "too_many_photos":
        message = response.json()["error"]["message"]
        assert message.startswith("File 2: Refused as too_many_photos.")
        assert "may have been stored" in message


def test_rejection_status_of_unknown_or_missing_codes_is_422() -> None:
    assert rejection_status(None) == 422
    assert rejection_status("something_new") == 422
    assert rejection_status("file_too_large") == 413
