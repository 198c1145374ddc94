"""Pages of a subject's job records from a real NATS KV bucket: newest first, tokens, isolation."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from likeness.bus import Bus
from likeness.config import CommonSettings
from likeness.ids import new_id
from likeness.jobs import JobRecords
from likeness.record_pages import InvalidPage, subject_page
from likeness.v1 import trainer_pb2
from likeness_dev.testing import provisioned_kv


@pytest.fixture
async def records(settings: CommonSettings) -> AsyncIterator[JobRecords[trainer_pb2.Training]]:
    bus = await Bus.connect(settings.nats_url, "pages-test")
    name = f"pages-{uuid.uuid4().hex[:8]}"
    yield JobRecords(await provisioned_kv(bus, name), trainer_pb2.Training)
    await bus.js.delete_key_value(name)
    await bus.close()


async def _add(records: JobRecords[trainer_pb2.Training], tenant: str, subject: str) -> str:
    training = trainer_pb2.Training(id=new_id("trn"), tenant=tenant, subject_id=subject)
    await records.create(training)
    return training.id


async def test_pages_run_newest_first_and_see_only_the_subject(
    records: JobRecords[trainer_pb2.Training],
) -> None:
    subject, other = new_id("sub"), new_id("sub")
    mine = [await _add(records, "acme", subject) for _ in range(5)]
    await _add(records, "acme", other)
    await _add(records, "globex", subject)  # the same id under another tenant is not this subject's
    seen: list[str] = []
    token = ""
    while True:
        page = await subject_page(records, "acme", subject, 2, token, "trn")
        assert len(page.records) <= 2
        seen += [record.id for record in page.records]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(mine, reverse=True)


async def test_bad_requests_are_refused_and_unknown_subjects_are_empty(
    records: JobRecords[trainer_pb2.Training],
) -> None:
    with pytest.raises(InvalidPage) as bad_size:
        await subject_page(records, "acme", new_id("sub"), 101, "", "trn")
    assert bad_size.value.code == "invalid_page_size"
    with pytest.raises(InvalidPage) as bad_token:
        await subject_page(records, "acme", new_id("sub"), 10, new_id("ren"), "trn")
    assert bad_token.value.code == "invalid_page_token"
    empty = await subject_page(records, "acme", "not-a-subject", 10, "", "trn")
    assert empty.records == []
    assert empty.next_page_token == ""
