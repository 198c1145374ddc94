"""Uploads through the real stack (gateway -> ingest -> S3/Vault/NATS): per-subject rules and statuses.

The gateway answers an upload whose every photo was rejected with the status of the first reason:
413 file_too_large, 415 unsupported_format, 422 for every other; one usable photo makes it a 200 that
lists every verdict.
"""

from __future__ import annotations

import io

from PIL import Image

from likeness_dev.journey import GatewayClient
from likeness_dev.samples import DISTINCT_SAMPLES, other_person_photo, sample_photos


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
