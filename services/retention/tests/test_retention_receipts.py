"""Erasure receipts: issued by retention when an erasure completes, verified against the published key;
any change to a fact, the signature or the key breaks them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from likeness import ids, receipts
from likeness.receipts import ReceiptError
from likeness.timeutil import ManualClock
from retention.config import RetentionSettings
from retention.receipts import published_keys, signing_key

FACTS: dict[str, Any] = {
    "type": receipts.RECEIPT_TYPE,
    "version": receipts.RECEIPT_VERSION,
    "issuer": "likeness-retention",
    "erasure_id": "era_01j0000000000000000000000a",
    "tenant": "acme",
    "subject_hmac": "5" * 64,
    "cause": "request",
    "subject_commitment": "c" * 64,
    "requested_at": "2026-03-01T10:00:00Z",
    "key_destroyed_at": "2026-03-01T10:00:00.120000Z",
    "purge_completed_at": "2026-03-01T10:00:01.500000Z",
    "backups_expire_by": "2026-03-31T10:00:00.120000Z",
    "issued_at": "2026-03-01T10:00:01.600000Z",
    "objects_deleted": 84,
    "bytes_deleted": 10_485_760,
    "records_deleted": 3,
    "events_purged": 12,
}


def _signed() -> tuple[dict[str, Any], dict[str, Any]]:
    private = receipts.private_key_from_text(receipts.new_private_key_text())
    document = receipts.sign_receipt(FACTS, private)
    keys = receipts.load_public_keys(json.dumps(receipts.jwks([private.public_key()])))
    return document, keys


def test_a_signed_receipt_verifies_and_survives_reformatting() -> None:
    document, keys = _signed()
    assert receipts.verify_receipt(document, keys) == FACTS
    pretty = json.dumps(document, indent=4, sort_keys=False)
    assert receipts.verify_receipt_text(pretty, keys) == FACTS


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("objects_deleted", 83),
        ("bytes_deleted", 10_485_761),
        ("key_destroyed_at", "2026-03-01T10:00:00.130000Z"),
        ("purge_completed_at", "2026-03-01T10:00:01.400000Z"),
        ("backups_expire_by", "2026-04-30T10:00:00.120000Z"),
        ("subject_hmac", "6" * 64),
        ("subject_commitment", "d" * 64),
        ("tenant", "other"),
    ],
)
def test_changing_any_fact_breaks_the_signature(field: str, value: object) -> None:
    document, keys = _signed()
    document["receipt"][field] = value
    with pytest.raises(ReceiptError, match="does not match"):
        receipts.verify_receipt(document, keys)


def test_added_fields_a_forged_signature_or_an_unknown_key_fail() -> None:
    document, keys = _signed()
    extra = json.loads(json.dumps(document))
    extra["receipt"]["note"] = "all good"
    with pytest.raises(ReceiptError):
        receipts.verify_receipt(extra, keys)

    forged = json.loads(json.dumps(document))
    forged["signature"]["value"] = forged["signature"]["value"][::-1]
    with pytest.raises(ReceiptError):
        receipts.verify_receipt(forged, keys)

    other = receipts.private_key_from_text(receipts.new_private_key_text())
    by_another = receipts.sign_receipt(FACTS, other)
    with pytest.raises(ReceiptError, match="not among the published keys"):
        receipts.verify_receipt(by_another, keys)
    by_another["signature"]["kid"] = document["signature"]["kid"]
    with pytest.raises(ReceiptError, match="does not match"):
        receipts.verify_receipt(by_another, keys)


def test_malformed_receipts_are_refused_with_a_reason() -> None:
    document, keys = _signed()
    text = json.dumps(document)
    duplicated = text.replace('"tenant": "acme"', '"tenant": "acme", "tenant": "evil"')
    with pytest.raises(ReceiptError, match="twice"):
        receipts.verify_receipt_text(duplicated, keys)
    with pytest.raises(ReceiptError, match="not JSON"):
        receipts.verify_receipt_text(text[:-5], keys)
    out_of_order = dict(FACTS, purge_completed_at="2026-03-01T09:00:00Z")
    with pytest.raises(ReceiptError, match="out of order"):
        receipts.sign_receipt(out_of_order, receipts.private_key_from_text(receipts.new_private_key_text()))


def test_public_keys_load_from_a_jwk_set_a_jwk_or_bare_base64() -> None:
    private = receipts.private_key_from_text(receipts.new_private_key_text())
    public = private.public_key()
    kid = receipts.key_id(public)
    jwk = receipts.public_jwk(public)
    for text in (json.dumps({"keys": [jwk]}), json.dumps(jwk), jwk["x"]):
        assert list(receipts.load_public_keys(text)) == [kid]
    with pytest.raises(ReceiptError):
        receipts.load_public_keys('{"keys": [{"kty": "RSA", "n": "x"}]}')


def test_signing_keys_come_from_settings_and_rotate() -> None:
    configured = receipts.new_private_key_text()
    settings = RetentionSettings(receipt_signing_key=configured)
    assert receipts.key_id(signing_key(settings).public_key()) == receipts.key_id(
        receipts.private_key_from_text(configured).public_key()
    )
    dev = RetentionSettings(hmac_secret="some-dev-secret")
    assert receipts.key_id(signing_key(dev).public_key()) == receipts.key_id(
        receipts.development_key("some-dev-secret").public_key()
    ), "a dev stack's key is derived from its HMAC secret, so it survives restarts"
    old = receipts.public_jwk(signing_key(dev).public_key())["x"]
    rotated = RetentionSettings(receipt_signing_key=configured, receipt_previous_public_keys=[old])
    assert len(published_keys(rotated)) == 2, "earlier keys stay published so old receipts verify"
    with pytest.raises(ValueError, match="RECEIPT_SIGNING_KEY"):
        RetentionSettings(
            env="production",
            jwks_url="https://idp.example/jwks.json",  # the token settings production requires (part S2)
            jwt_issuer="https://idp.example/",
            jwt_audience="likeness-api",  # not the default (issue 15)
            hmac_secret="x" * 40,
            audit_pseudonym_secret="p" * 40,
            s3_secret_key="a-real-s3-secret",
            vault_token="a-real-vault-token",
            nats_url="tls://nats:4222",
            s3_endpoint="https://s3",
            vault_addr="https://vault",
        )


async def test_a_completed_erasure_has_a_receipt_that_verifies(instances: Any) -> None:
    clock = ManualClock()
    servicer = await instances.new(clock)
    tenant = instances.tenant
    sid = (await instances.open_subject(servicer, tenant)).id
    for n in range(3):
        await instances.put_object(servicer, tenant, sid, f"renders/{ids.new_id('ren')}/img{n}", b"x" * 1000)
    requested = await servicer.eraser.request(tenant, sid, "request")
    assert requested.erasure is not None
    assert requested.receipt_salt
    erasure = await instances.wait_erased(servicer, tenant, requested.erasure.id)

    raw = await servicer.receipt(tenant, erasure.id)
    assert raw is not None
    assert sid.encode() not in raw, "a receipt names the subject only by HMAC and salted hash"
    assert requested.receipt_salt.encode() not in raw
    keys = receipts.load_public_keys(json.dumps(servicer.receipt_keys()))
    facts = receipts.verify_receipt_text(raw, keys)
    assert facts["version"] == 2
    assert "key_name" not in facts
    assert facts["subject_hmac"] == erasure.subject_hmac
    assert receipts.names_subject(facts, sid, requested.receipt_salt)
    assert not receipts.names_subject(facts, ids.new_id("sub"), requested.receipt_salt)
    assert not receipts.names_subject(facts, sid, receipts.new_receipt_salt())
    assert erasure.key_name == "", "the completed erasure's record no longer names the key (nor the subject)"
    assert facts["objects_deleted"] == 3
    assert facts["bytes_deleted"] == erasure.bytes_deleted > 3000
    assert facts["key_destroyed_at"] <= facts["purge_completed_at"]
    assert facts["backups_expire_by"] > facts["key_destroyed_at"]
    assert await servicer.receipt(tenant, erasure.id) == raw, "issued once, then served as stored"

    tampered = json.loads(raw)
    tampered["receipt"]["objects_deleted"] = 0
    with pytest.raises(ReceiptError):
        receipts.verify_receipt(tampered, keys)
    assert not await asyncio.to_thread(servicer.platform.keys.exists, sid)


def test_a_version_1_receipt_still_verifies() -> None:
    """Receipts issued before the commitment named the Vault key; they keep verifying."""
    v1 = {k: v for k, v in FACTS.items() if k != "subject_commitment"}
    v1 |= {"version": 1, "key_name": "likeness-subject-sub_01j0000000000000000000000a"}
    private = receipts.private_key_from_text(receipts.new_private_key_text())
    keys = receipts.load_public_keys(json.dumps(receipts.jwks([private.public_key()])))
    assert receipts.verify_receipt(receipts.sign_receipt(v1, private), keys) == v1
    with pytest.raises(ReceiptError, match="subject_commitment"):
        receipts.sign_receipt({**FACTS, "subject_commitment": None}, private)


def test_the_subject_commitment_binds_salt_tenant_and_subject() -> None:
    sid, salt = ids.new_id("sub"), receipts.new_receipt_salt()
    commitment = receipts.subject_commitment(salt, "acme", sid)
    assert len(commitment) == 64
    assert sid not in commitment
    others = {
        receipts.subject_commitment(receipts.new_receipt_salt(), "acme", sid),
        receipts.subject_commitment(salt, "acme2", sid),
        receipts.subject_commitment(salt, "acme", ids.new_id("sub")),
        # Parts are length-prefixed: moving a character across a boundary changes the hash.
        receipts.subject_commitment(salt + "a", "cme", sid),
    }
    assert commitment not in others
    assert len(others) == 4
    facts = {"tenant": "acme", "subject_commitment": commitment}
    assert receipts.names_subject(facts, sid, salt)
    assert not receipts.names_subject(facts, sid, salt[:-1])
    with pytest.raises(ValueError, match="salt"):
        receipts.subject_commitment("", "acme", sid)
