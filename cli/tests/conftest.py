"""Shared by the CLI's tests: the facts of an erasure receipt, as retention signs them."""

from __future__ import annotations

from typing import Any

import pytest

from likeness import receipts


@pytest.fixture
def receipt_facts() -> dict[str, Any]:
    return {
        "type": receipts.RECEIPT_TYPE,
        "version": receipts.RECEIPT_VERSION,
        "issuer": "likeness-retention",
        "erasure_id": "era_01j0000000000000000000000a",
        "tenant": "acme",
        "subject_hmac": "a" * 64,
        "cause": "request",
        "subject_commitment": "c" * 64,
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
