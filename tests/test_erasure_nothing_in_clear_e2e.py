"""After an erasure, nothing that is kept names the person in clear (issue 16, item 6), through the real
stack: every message JetStream keeps (every stream and KV bucket: keys, markers, headers, payloads) and the
signed receipt are searched for the subject id, while every service still purged its records of them. The
person checks that the receipt names them with the salt the erasure request gave them, once."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import nats
import pytest

from likeness_cli.main import main
from likeness_client import Gone, LikenessClient
from likeness_dev.leaks import Finding, scan_streams
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_dev.tokens import ALL_SCOPES

pytestmark = pytest.mark.slow


def kept_naming(stack: DevStack, needles: dict[str, str]) -> tuple[list[Finding], int]:
    async def scan() -> tuple[list[Finding], int]:
        nc = await nats.connect(stack.infra.endpoints.nats_url)  # the admin user: every stream
        try:
            return await scan_streams(nc.jetstream(), needles)
        finally:
            await nc.close()

    return asyncio.run(scan())


def test_after_erasure_no_stream_bucket_or_receipt_names_the_subject(
    stack: DevStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with LikenessClient(stack.gateway_url, stack.mint_token(scopes=ALL_SCOPES), timeout=120) as client:
        subject = client.create_subject(purpose="headshots", policy_version="2026-01")
        # Photos: ingest's records, retention's deadlines, events, and the gateway's idempotency index.
        uploaded = client.upload_photos(subject.id, sample_photos(2)).photos
        assert all(photo.accepted for photo in uploaded), uploaded
        needles = {"the subject id": subject.id}
        before, _ = kept_naming(stack, needles)
        assert len(before) >= 3, "the scan must see the live subject's records (else it proves nothing)"

        accepted = client.erase_subject(subject.id)
        assert accepted.receipt_salt, "the salt is given with the answer that started the erasure"
        deadline = time.monotonic() + 90
        while client.get_erasure(accepted.erasure_id).status != "completed":
            assert time.monotonic() < deadline, "the erasure never completed"
            time.sleep(0.25)
        # The rescan (`erasure_rescan_seconds` later) forgets the last deadline keys and the erasure notice
        # once every service acknowledged it.
        while (found := kept_naming(stack, needles))[0] and time.monotonic() < deadline:
            time.sleep(1.0)
        findings, read = found
        assert read > 0
        assert findings == [], [str(finding) for finding in findings]

        erasure = client.get_erasure(accepted.erasure_id)
        assert erasure.key_name == ""
        assert subject.id not in erasure.model_dump_json()
        document = client.get_erasure_receipt(accepted.erasure_id).model_dump(mode="json")
        assert subject.id not in json.dumps(document)
        with pytest.raises(Gone):  # read from the tombstone under the subject's keyed HMAC
            client.get_subject(subject.id)

    # The person's own token still finds their (completed) erasure, by the HMAC of its subject.
    own = stack.mint_token(scopes=ALL_SCOPES, subject=subject.id)
    with LikenessClient(stack.gateway_url, own, timeout=60) as person:
        assert person.get_erasure(accepted.erasure_id).status == "completed"

    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps(document))
    where = ["--project-dir", str(stack.project_dir)]
    check = ["receipt", "verify", str(receipt), *where, "--subject", subject.id, "--salt"]
    assert main([*check, accepted.receipt_salt]) == 0
    assert f"NAMES {subject.id}" in capsys.readouterr().out
    assert main([*check, accepted.receipt_salt + "x"]) == 1, "another salt: not this subject"
    assert "DOES NOT NAME" in capsys.readouterr().out
