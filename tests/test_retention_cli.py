"""`likeness receipt verify|keys|keygen` and `likeness retention policy`, as a user runs them."""

from __future__ import annotations

import argparse
import json
import secrets
from pathlib import Path

import pytest

from likeness import receipts
from likeness_cli.receipts import EXIT_INVALID, EXIT_OK, register
from likeness_dev.infra import Infra

FACTS = {
    "type": receipts.RECEIPT_TYPE,
    "version": receipts.RECEIPT_VERSION,
    "issuer": "likeness-retention",
    "erasure_id": "era_01j0000000000000000000000a",
    "tenant": "acme",
    "subject_hmac": "a" * 64,
    "cause": "request",
    "key_name": "likeness-subject-sub_01j0000000000000000000000a",
    "requested_at": "2026-03-01T10:00:00Z",
    "key_destroyed_at": "2026-03-01T10:00:00.100000Z",
    "purge_completed_at": "2026-03-01T10:00:02Z",
    "backups_expire_by": "2026-03-31T10:00:00.100000Z",
    "issued_at": "2026-03-01T10:00:02.100000Z",
    "objects_deleted": 84,
    "bytes_deleted": 1234567,
    "records_deleted": 2,
    "events_purged": 9,
}


def likeness(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="likeness")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in (
        "LIKENESS_RECEIPT_SIGNING_KEY",
        "LIKENESS_HMAC_SECRET",
        "LIKENESS_RECEIPT_PREVIOUS_PUBLIC_KEYS",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_keygen_then_verify_a_receipt_and_refuse_a_tampered_one(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jwks = clean_env / "receipt-keys.json"
    assert likeness("receipt", "keygen", "--jwks-out", str(jwks)) == EXIT_OK
    secret = capsys.readouterr().out.strip().removeprefix("LIKENESS_RECEIPT_SIGNING_KEY=")
    signed = receipts.sign_receipt(FACTS, receipts.private_key_from_text(secret))
    receipt = clean_env / "receipt.json"
    receipt.write_text(json.dumps(signed, indent=2))

    assert (
        likeness("receipt", "verify", str(receipt), "--keys", str(jwks), "--project-dir", str(clean_env)) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("VALID")
    assert "84 objects, 1234567 bytes" in out

    signed["receipt"]["objects_deleted"] = 85
    receipt.write_text(json.dumps(signed))
    assert likeness("receipt", "verify", str(receipt), "--keys", str(jwks)) == EXIT_INVALID
    assert capsys.readouterr().out.startswith("NOT VALID: the signature does not match")


def test_keys_prints_the_published_set_of_the_configured_key(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LIKENESS_HMAC_SECRET", "a-dev-stack-secret")
    assert likeness("receipt", "keys", "--project-dir", str(clean_env)) == EXIT_OK
    published = receipts.load_public_keys(capsys.readouterr().out)
    expected = receipts.development_key("a-dev-stack-secret").public_key()
    assert list(published) == [receipts.key_id(expected)]

    receipt = clean_env / "receipt.json"
    receipt.write_text(
        json.dumps(receipts.sign_receipt(FACTS, receipts.development_key("a-dev-stack-secret")))
    )
    assert likeness("receipt", "verify", str(receipt), "--project-dir", str(clean_env)) == EXIT_OK
    monkeypatch.setenv("LIKENESS_HMAC_SECRET", "another-stack")
    assert likeness("receipt", "verify", str(receipt), "--project-dir", str(clean_env)) == EXIT_INVALID


@pytest.mark.integration
def test_retention_policy_prints_and_sets_a_tenants_schedule(
    clean_env: Path, infra: Infra, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in infra.endpoints.as_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LIKENESS_KV_BUCKET_PREFIX", f"cli{secrets.token_hex(3)}_")
    tenant = f"t{secrets.token_hex(4)}"
    where = ("--project-dir", str(clean_env))

    assert likeness("retention", "policy", "--tenant", tenant, *where) == EXIT_OK
    text = capsys.readouterr().out
    assert f'tenant "{tenant}" (service defaults' in text
    assert "30 days after upload" in text

    args = ("--photos-days", "7", "--photos-after-training", "--renders-days", "5000")
    assert likeness("retention", "policy", "--tenant", tenant, *args, *where) == EXIT_OK
    text = " ".join(capsys.readouterr().out.split())  # as read, whatever the line wrapping
    assert "(set by the tenant)" in text
    assert "as soon as a model of the person has been trained" in text
    assert "at the latest 7 days after upload" in text
    assert "Headshots Deleted 1095 days" in text, "capped by law"
