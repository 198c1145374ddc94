"""`likeness retention policy get|set` through the real stack's gateway, as a tenant's admin runs it (the
receipt commands' own tests are in cli/tests/test_receipt_commands.py)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from likeness_cli.main import main
from likeness_cli.receipts import EXIT_OK
from likeness_dev.stack import DevStack

SOME_SUBJECT = "sub_01jbz3k7q8m2x4v6n9p0r5t7wy"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("LIKENESS_GATEWAY_URL", "LIKENESS_TOKEN", "LIKENESS_DEV_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.mark.slow
def test_retention_policy_is_read_and_set_through_the_gateway(
    stack: DevStack, clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = f"t{secrets.token_hex(4)}"  # a tenant of its own: nothing else sets its schedule
    token = stack.mint_token(tenant=tenant, scopes=["retention:read", "retention:write"])
    where = ["--url", stack.gateway_url, "--project-dir", str(clean_env)]

    assert main(["retention", "policy", "get", "--token", token, *where]) == EXIT_OK
    text = capsys.readouterr().out
    assert f'tenant "{tenant}" (service defaults' in text
    assert "30 days after upload" in text

    changes = ["--photos-days", "7", "--photos-after-training", "--renders-days", "5000"]
    assert main(["retention", "policy", "set", *changes, "--token", token, *where]) == EXIT_OK
    captured = capsys.readouterr()
    assert "applies to subjects opened from now on" in captured.err
    text = " ".join(captured.out.split())  # as read, whatever the line wrapping
    assert "(set by the tenant)" in text
    assert "as soon as a model of the person has been trained" in text
    assert "at the latest 7 days after upload" in text
    assert "Headshots Deleted 1095 days" in text, "capped by law"

    assert main(["retention", "policy", "get", "--json", "--token", token, *where]) == EXIT_OK
    policy = json.loads(capsys.readouterr().out)
    assert policy["tenant_specific"] is True
    assert policy["schedule"]["photos_days"] == 7
    assert policy["schedule"]["renders_days"] == policy["hard_cap_days"]

    # A tenant's policy is not an end user's to read: refused with the API's code, exit 1.
    end_user = stack.mint_token(tenant=tenant, scopes=["retention:read"], subject=SOME_SUBJECT)
    assert main(["retention", "policy", "get", "--token", end_user, *where]) == 1
    assert "insufficient_scope" in capsys.readouterr().err
