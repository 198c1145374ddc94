"""`likeness receipt verify|keys|keygen`: erasure receipts checked offline, and the keys that sign them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from likeness import receipts
from likeness_cli.main import main
from likeness_cli.receipts import EXIT_INVALID, EXIT_OK


def likeness(*argv: str) -> int:
    return main(list(argv))


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
    clean_env: Path, receipt_facts: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    jwks = clean_env / "receipt-keys.json"
    assert likeness("receipt", "keygen", "--jwks-out", str(jwks)) == EXIT_OK
    secret = capsys.readouterr().out.strip().removeprefix("LIKENESS_RECEIPT_SIGNING_KEY=")
    signed = receipts.sign_receipt(receipt_facts, receipts.private_key_from_text(secret))
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
    clean_env: Path,
    receipt_facts: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LIKENESS_HMAC_SECRET", "a-dev-stack-secret")
    assert likeness("receipt", "keys", "--project-dir", str(clean_env)) == EXIT_OK
    published = receipts.load_public_keys(capsys.readouterr().out)
    expected = receipts.development_key("a-dev-stack-secret").public_key()
    assert list(published) == [receipts.key_id(expected)]

    receipt = clean_env / "receipt.json"
    receipt.write_text(
        json.dumps(receipts.sign_receipt(receipt_facts, receipts.development_key("a-dev-stack-secret")))
    )
    assert likeness("receipt", "verify", str(receipt), "--project-dir", str(clean_env)) == EXIT_OK
    monkeypatch.setenv("LIKENESS_HMAC_SECRET", "another-stack")
    assert likeness("receipt", "verify", str(receipt), "--project-dir", str(clean_env)) == EXIT_INVALID


def test_verify_checks_that_the_receipt_names_a_subject_given_its_salt(
    clean_env: Path, receipt_facts: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    subject, salt = "sub_01j0000000000000000000000a", receipts.new_receipt_salt()
    facts = receipt_facts | {"subject_commitment": receipts.subject_commitment(salt, "acme", subject)}
    private = receipts.private_key_from_text(receipts.new_private_key_text())
    receipt = clean_env / "receipt.json"
    receipt.write_text(json.dumps(receipts.sign_receipt(facts, private)))
    keys = clean_env / "keys.json"
    keys.write_text(json.dumps(receipts.jwks([private.public_key()])))
    verify = ["receipt", "verify", str(receipt), "--keys", str(keys)]

    assert likeness(*verify, "--subject", subject, "--salt", salt) == EXIT_OK
    assert f"NAMES {subject}" in capsys.readouterr().out
    other = "sub_01j0000000000000000000000b"
    assert likeness(*verify, "--subject", other, "--salt", salt) == EXIT_INVALID
    assert f"DOES NOT NAME {other}" in capsys.readouterr().out
    assert likeness(*verify, "--subject", subject, "--salt", salt[:-2]) == EXIT_INVALID
    assert likeness(*verify, "--subject", subject) == 2, "a subject without its salt is bad usage"
