"""What every journey through the dev stack must show, whichever base model family it ran on.

The SD 1.5 and SDXL journeys (`tests/test_journey_e2e.py`, `tests/test_sdxl_journey_e2e.py`) call these
same checks, so a privacy check added here holds for both families at once.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import PIL.Image

from likeness_dev.journey import JourneyResult
from likeness_dev.leaks import photo_secrets, scan_plaintext
from likeness_dev.stack import DevStack
from likeness_marks.iptc import is_marked


def check_headshots_came_out(journey: JourneyResult, styles: Sequence[str], images_per_style: int) -> None:
    """Every photo accepted, the training succeeded, and each style's images are marked PNGs."""
    assert all(p["status"] == "accepted" for p in journey.photos), journey.photos
    assert journey.training["status"] == "succeeded"
    assert len(journey.images) == len(styles) * images_per_style
    assert {i.style for i in journey.images} == set(styles)
    for image in journey.images:
        assert image.content_type == "image/png"
        with PIL.Image.open(io.BytesIO(image.data)) as decoded:
            assert decoded.size[0] > 0
        assert is_marked(image.data), "every output must say it is AI-generated"


def check_erased(journey: JourneyResult) -> None:
    """The key was destroyed first, then every object and record went; the receipt names nobody."""
    erasure = journey.erasure
    assert erasure["status"] == "completed"
    assert erasure["key_destroyed_at"]
    assert erasure["completed_at"]
    assert erasure["key_destroyed_at"] <= erasure["completed_at"]
    assert erasure["objects_deleted"] >= len(journey.photos) + len(journey.images) + 1
    assert journey.subject_id not in str(erasure.get("subject_hmac"))
    assert journey.after_erasure["subject"] == 410
    assert all(status in (404, 410) for status in journey.after_erasure.values())


def check_nothing_in_clear(
    stack: DevStack, journey: JourneyResult, photos: Sequence[tuple[str, bytes]]
) -> None:
    """No photo (nor any derivative the leak scanner knows) and no rendered image lies in clear in the S3
    data, the NATS store or the stack's temp directory."""
    endpoints = stack.infra.endpoints
    secrets_of_the_person = photo_secrets(list(photos))
    secrets_of_the_person += [(f"render {image.image_id}", image.data) for image in journey.images]
    scan = scan_plaintext(
        [endpoints.s3_data_dir, endpoints.nats_store_dir, stack.tmp_dir], secrets_of_the_person
    )
    assert scan.findings == [], "\n".join(str(finding) for finding in scan.findings)
    assert scan.bytes_scanned > 0, "the scan read nothing: wrong data directories?"
