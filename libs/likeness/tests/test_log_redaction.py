"""JSON log lines never carry a subject id, whatever the message, extras or traceback quote."""

from __future__ import annotations

import json
import logging
import sys

from likeness.ids import new_id, redact_subject_ids
from likeness.telemetry import JsonFormatter
from likeness.vault_transit import key_name


def _record(msg: str, **extra: object) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "test", "levelname": "WARNING", "msg": msg, **extra})


def test_ids_in_message_extras_and_traceback_are_redacted() -> None:
    subject = new_id("sub")
    training = new_id("trn")
    try:
        raise RuntimeError(f"GET /bucket/t/dev/s/{subject}/faces/x failed; key {key_name(subject)}")
    except RuntimeError:
        record = _record(f"retrying t/dev/s/{subject}/x", object_key=f"t/dev/s/{subject}/x", job_id=training)
        record.exc_info = sys.exc_info()
    line = JsonFormatter("test").format(record)
    assert subject not in line
    entry = json.loads(line)
    assert "sub_<redacted>" in entry["msg"]
    assert "sub_<redacted>" in entry["traceback"]
    assert entry["object_key"] == "t/dev/s/sub_<redacted>/x"
    # Job ids are how operators follow a job: they are not personal and stay.
    assert entry["job_id"] == training


def test_redaction_leaves_other_text_alone() -> None:
    text = "sub_short and subject and tenant dev"
    assert redact_subject_ids(text) == text
