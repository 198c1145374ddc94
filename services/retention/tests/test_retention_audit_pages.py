"""Page tokens of the audit read methods (`retention.audit_log`): pure logic, no server."""

from __future__ import annotations

import pytest

from retention.audit_log import InvalidPageToken, start_after


def test_a_page_resumes_after_the_sequence_its_token_names() -> None:
    assert start_after("") == 1
    assert start_after("41") == 42
    assert start_after(str(2**64 - 2)) == 2**64 - 1


@pytest.mark.parametrize(
    "token",
    ["0", "-1", "x", "1 ", "01", str(2**64 - 1), "54285217382949475005", "9" * 20, "1" * 21],
)
def test_a_token_no_page_gave_is_refused_before_it_reaches_jetstream(token: str) -> None:
    # JetStream's sequences are uint64: a larger number was a server error (a contract run found it),
    # now it is the caller's invalid page token (400).
    with pytest.raises(InvalidPageToken):
        start_after(token)
