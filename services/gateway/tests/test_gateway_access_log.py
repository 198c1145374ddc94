"""Which requests the access log shows at INFO: everything but a quick successful read (DEBUG), unless
`LIKENESS_ACCESS_LOG_READS` asks for those too."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

CONSENT = {"consent": {"purpose": "headshots", "policy_version": "2025-01"}}


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def levels(self, method: str, status: int) -> list[int]:
        return [
            r.levelno
            for r in self.records
            if r.name == "gateway.access"
            and (r.__dict__.get("method"), r.__dict__.get("status")) == (method, status)
        ]


@pytest.fixture
def access_log() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("gateway.access")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def test_quick_successful_reads_are_debug_and_the_rest_info(make_client, auth, access_log) -> None:
    async with make_client() as client:
        created = await client.post("/v1/subjects", json=CONSENT, headers=auth())
        assert created.status_code == 201
        subject = created.json()["id"]
        assert (await client.get(f"/v1/subjects/{subject}", headers=auth())).status_code == 200
        assert (await client.get("/v1/subjects/sub_nope", headers=auth())).status_code == 404
        assert (await client.get("/v1/styles")).status_code == 401
    assert access_log.levels("POST", 201) == [logging.INFO]
    assert access_log.levels("GET", 200) == [logging.DEBUG]
    assert access_log.levels("GET", 404) == [logging.INFO]
    assert access_log.levels("GET", 401) == [logging.INFO]


async def test_every_read_is_info_when_asked(make_client, auth, access_log) -> None:
    async with make_client(access_log_reads=True) as client:
        assert (await client.get("/v1/styles", headers=auth())).status_code == 200
    assert access_log.levels("GET", 200) == [logging.INFO]
