"""The leak scanners must be able to fail: planted leaks are found, noise and padding are not."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import PIL.Image

from likeness_dev.leaks import (
    RunIndex,
    metric_label_values,
    photo_secrets,
    scan_plaintext,
    scan_text,
)


def test_a_run_index_finds_a_64_byte_run_and_nothing_shorter() -> None:
    secret = bytes(range(256)) * 4
    index = RunIndex([("secret", secret), ("padding", b"\0" * 4096)])
    assert index.find(b"noise" * 50 + secret[100:164] + b"noise") == "secret"
    assert index.find(b"noise" * 50 + secret[100:160] + b"noise") is None, "63 bytes are not a run"
    assert index.find(secret[5:69]) == "secret", "at the very start of a file"
    assert index.find(b"\0" * 4096) is None


def _png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    image = PIL.Image.fromarray(noise)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_plaintext_scan_finds_signatures_and_pixels_in_nested_files(tmp_path: Path) -> None:
    png = _png()
    secrets = photo_secrets([("photo.png", png)])
    pixels = secrets[1][1]
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "volume.dat").write_bytes(b"\x01" * 100 + pixels[300:400] + b"\x02" * 100)
    (tmp_path / "a" / "blob").write_bytes(b"head" + png[:16] + b"tail")
    (tmp_path / "clean").write_bytes(bytes(range(256)) * 8)

    scan = scan_plaintext([tmp_path, tmp_path / "missing"], secrets)

    found = {(Path(finding.where).name, finding.what) for finding in scan.findings}
    assert ("volume.dat", "a 64-byte run of photo.png pixels") in found
    assert ("blob", "png signature") in found
    assert not any(name == "clean" for name, _ in found)
    assert scan.files == 3
    assert scan.bytes_scanned > 0


def test_text_scan_names_the_needle_never_its_value(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    log.write_text('{"msg": "opened", "x": "sub_01jabcdefghjkmnpqrstvwxyz0"}\n')
    findings = scan_text(
        [log, tmp_path / "none.log"], {"subject id": "sub_01jabcdefghjkmnpqrstvwxyz0", "ref": "abc"}
    )
    assert [finding.what for finding in findings] == ["subject id"], "short needles are skipped"
    assert "sub_01j" not in str(findings[0])


def test_metric_labels_are_parsed_with_escapes() -> None:
    text = (
        "# HELP x y\n"
        'likeness_requests_total{route="/v1/subjects/{subject_id}",status="200"} 3.0\n'
        'odd{v="a \\"quoted\\" sub_01jabcdefghjkmnpqrstvwxyz0"} 1\n'
        "plain 4\n"
    )
    values = metric_label_values(text)
    assert ("likeness_requests_total", "route", "/v1/subjects/{subject_id}") in values
    assert any("sub_01jabcdefghjkmnpqrstvwxyz0" in value for _, _, value in values)
    assert len(values) == 3
