"""Uploads through the real stack (gateway -> ingest -> S3/Vault/NATS): per-subject rules and statuses.

The gateway answers an upload whose every photo was rejected with the status of the first reason:
413 file_too_large, 415 unsupported_format, 422 for every other; one usable photo makes it a 200 that
lists every verdict. Ingest parses every upload in its decoding sandbox, whose workers are checked here too.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

from PIL import Image

from ingest.sandbox.worker_process import confinement_problems
from likeness_dev.journey import GatewayClient
from likeness_dev.samples import DISTINCT_SAMPLES, other_person_photo, sample_photos
from likeness_dev.stack import DevStack


def _open_subject(gateway: GatewayClient) -> str:
    body = {"consent": {"purpose": "headshots", "policy_version": "1"}}
    return str(gateway.json("POST", "/v1/subjects", expect=(201,), json=body)["id"])


def _files(*named: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (name, data, "application/octet-stream")) for name, data in named]


def test_the_samples_are_one_person_and_a_repeat_or_a_stranger_is_refused(
    gateway_module: GatewayClient,
) -> None:
    subject_id = _open_subject(gateway_module)
    samples = sample_photos(DISTINCT_SAMPLES + 1)  # the last repeats the first, slightly brighter
    uploaded = gateway_module.json("POST", f"/v1/subjects/{subject_id}/photos", files=_files(*samples))[
        "photos"
    ]
    verdicts = [p["status"] if p["status"] == "accepted" else p["reasons"][0]["code"] for p in uploaded]
    assert verdicts == ["accepted"] * DISTINCT_SAMPLES + ["duplicate"]
    assert all({"sharpness", "face_brightness"} <= set(p["scores"]) for p in uploaded)

    stranger = gateway_module.call(
        "POST",
        f"/v1/subjects/{subject_id}/photos",
        expect=(422,),
        files=_files(("someone-else.jpg", other_person_photo())),
    ).json()
    assert stranger["error"]["code"] == "different_person"
    assert stranger["photos"][0]["reasons"][0]["code"] == "different_person"

    listed = gateway_module.json("GET", f"/v1/subjects/{subject_id}/photos")["photos"]
    assert sum(p["status"] == "accepted" for p in listed) == DISTINCT_SAMPLES


def test_a_file_that_is_not_a_photo_is_415(gateway_module: GatewayClient) -> None:
    subject_id = _open_subject(gateway_module)
    gif = io.BytesIO()
    Image.new("RGB", (300, 300), "red").save(gif, format="GIF")
    response = gateway_module.call(
        "POST",
        f"/v1/subjects/{subject_id}/photos",
        expect=(415,),
        files=_files(("selfie.jpg", gif.getvalue())),
    ).json()
    assert response["error"]["code"] == "unsupported_format"
    assert response["photos"][0]["status"] == "rejected"


def _decoding_workers(service_pid: int) -> list[int]:
    """The decoding sandbox's workers of the ingest process: its children running the worker module."""
    workers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if parent == service_pid and b"ingest.sandbox.worker" in argv:
            workers.append(int(entry.name))
    return sorted(workers)


def _wake_ups(pid: int) -> int:
    """How often the process has blocked and woken again (a worker blocks on its channel between jobs)."""
    [line] = [
        line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("voluntary")
    ]
    return int(line.split()[1])


def test_a_good_upload_is_accepted_with_the_decoding_sandbox_on(
    stack: DevStack, gateway_module: GatewayClient
) -> None:
    """The real ingest process decodes in its sandbox: its workers run confined (seccomp filter, no new
    privileges, no capabilities, as /proc says), one per photo it sanitizes at once, and do the work."""
    ingest = stack.services["ingest"].process.pid
    assert ingest is not None
    # A worker that served an earlier test's upload may be being replaced: its successor confines itself
    # before it says it is ready, and the pool hands a job only to a ready worker, so the check waits for the
    # pair to settle (bounded) rather than judge a process still starting.
    deadline = time.monotonic() + 60
    while True:
        workers = _decoding_workers(ingest)
        problems = {pid: confinement_problems(pid) for pid in workers}
        settled = len(workers) == 2 and not any(problems.values())
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(workers) == 2, "LIKENESS_MAX_CONCURRENT (2) workers"
    for pid in workers:
        assert problems[pid] == [], pid
    woken = {pid: _wake_ups(pid) for pid in workers}

    subject_id = _open_subject(gateway_module)
    [photo] = gateway_module.json(
        "POST", f"/v1/subjects/{subject_id}/photos", files=_files(sample_photos(1)[0])
    )["photos"]
    assert photo["status"] == "accepted", photo

    # A worker decoded it (unless it was recycled on the way: then its replacement is there instead).
    after = _decoding_workers(ingest)
    assert len(after) == 2
    assert any(_wake_ups(pid) > woken[pid] for pid in after if pid in woken) or set(after) != set(workers)
