"""After the faults and the load: nothing of anyone leaked, anywhere the stack writes or shows.

Runs last (marker `leak_scan`). Scans the chaos stack with `likeness_dev.leaks.scan_stack`:
- the S3 and NATS data dirs and the services' private TMPDIR: no image signature, no 64-byte run of any
  photo (file bytes or pixels) or rendered image that went through the stack;
- every service's log file: no subject id, external ref, bearer token, nor the stack's key material
  (HMAC secret, JWT signing secret, S3 secret key, Vault token);
- every `/metrics` endpoint: no label value holding any of those, or any id of ours.
When run on its own it first sends one person through the journey, so there is always something to find.
"""

from __future__ import annotations

from typing import Any

import pytest

from likeness_dev.leaks import photo_secrets, scan_stack

pytestmark = [pytest.mark.chaos, pytest.mark.chaos_ci, pytest.mark.leak_scan]


def _one_journey(kit: Any) -> None:
    subject_id = kit.open_subject(external_ref=f"chaos-ref-{id(kit)}")
    training_id = kit.train(subject_id, 4)
    assert kit.ended(f"/v1/trainings/{training_id}")["status"] == "succeeded"
    render = kit.ended(f"/v1/renders/{kit.render(subject_id, training_id, ['linkedin'], 2)}")
    assert render["status"] == "succeeded", render
    kit.download(render)
    kit.erase(subject_id)


def test_no_plaintext_no_identifier_no_secret_leaked(kit: Any) -> None:
    ledger = kit.ledger
    if not ledger.images:
        _one_journey(kit)
    secrets = photo_secrets(ledger.photos.items())
    secrets += [(f"render {image_id}", data) for image_id, data in ledger.images.items()]

    findings, plaintext = scan_stack(kit.stack, secrets, ledger.needles)

    assert plaintext.bytes_scanned > 0, "the scan read nothing: wrong data directories?"
    assert any(label.startswith("subject id") for label in ledger.needles)
    assert findings == [], "\n".join(str(finding) for finding in findings)
