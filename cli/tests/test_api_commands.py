"""The `likeness` API commands against a scripted gateway (httpx.MockTransport): what each sends, what it
prints, and its exit status. The real gateway: tests/test_client_e2e.py and tests/test_retention_cli.py."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from likeness import receipts
from likeness_cli import api_cli
from likeness_cli.main import main
from likeness_client import LikenessClient, Retention, RetryPolicy, TeamLook
from likeness_client.calls import ROUTES

BASE = "http://gateway.test"
Answer = Callable[[httpx.Request], httpx.Response]

SCHEDULE = {
    "photos_days": 7,
    "photos_deleted_after_training": True,
    "models_days": 365,
    "renders_days": 365,
    "inactivity_days": 365,
}
POLICY = {
    "schedule": SCHEDULE,
    "tenant_specific": True,
    "hard_cap_days": 1095,
    "backups_retention_days": 30,
    "text": "Photos are deleted 7 days after upload, or as soon as a model has been trained.",
}
LOOK = TeamLook(
    id="sales", name="Sales", style="linkedin", background="light_gray", seed_policy="fixed", seed=1234
).model_dump(mode="json")


class Gateway:
    """Answers each route from `answers` (keyed by path template), recording the requests."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], Answer] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, template: str, answer: Answer) -> None:
        self.answers[(method, template)] = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for route in ROUTES:
            if route.matches(request.method, request.url.path) and (route.method, route.template) in self:
                return self.answers[(route.method, route.template)](request)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "No such resource."}})

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.answers


def reply(body: Any, status: int = 200) -> Answer:
    return lambda request: httpx.Response(status, json=body)


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Gateway:
    fake = Gateway()
    client = functools.partial(
        LikenessClient, transport=httpx.MockTransport(fake), retry=RetryPolicy(max_attempts=1)
    )
    monkeypatch.setattr(api_cli, "LikenessClient", client)
    for name in ("LIKENESS_GATEWAY_URL", "LIKENESS_TOKEN", "LIKENESS_DEV_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return fake


def likeness(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str, token: bool = True
) -> tuple[int, str, str]:
    connection = ["--url", BASE, "--project-dir", str(tmp_path), *(["--token", "tok"] if token else [])]
    code = main([*argv, *connection])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_policy_set_puts_the_whole_schedule_and_prints_it_in_words(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    gateway.on("PUT", "/v1/retention-policy", reply(POLICY))
    code, out, err = likeness(
        capsys, tmp_path, "retention", "policy", "set", "--photos-days", "7", "--photos-after-training"
    )
    assert code == 0, err
    assert out.strip() == POLICY["text"]
    assert "applies to subjects opened from now on" in err
    sent = gateway.requests[0]
    assert sent.method == "PUT"
    whole = Retention(photos_days=7, photos_deleted_after_training=True)
    assert json.loads(sent.content) == whole.model_dump(), "a period left out is 0: the service default"


def test_policy_get_prints_words_or_the_whole_record(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    gateway.on("GET", "/v1/retention-policy", reply(POLICY))
    code, out, _ = likeness(capsys, tmp_path, "retention", "policy", "get")
    assert (code, out.strip()) == (0, POLICY["text"])
    code, out, _ = likeness(capsys, tmp_path, "retention", "policy", "get", "--json")
    assert code == 0
    assert json.loads(out) == POLICY


def test_an_api_error_prints_code_status_and_request_id_and_exits_1(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    refused = {"error": {"code": "insufficient_scope", "message": "An end-user token cannot do this."}}
    gateway.on(
        "GET",
        "/v1/retention-policy",
        lambda request: httpx.Response(403, json=refused, headers={"X-Request-Id": "req-42"}),
    )
    code, out, err = likeness(capsys, tmp_path, "retention", "policy", "get")
    assert code == 1
    assert out == ""
    assert "An end-user token cannot do this. (insufficient_scope, HTTP 403)" in err
    assert "request id: req-42" in err


def test_missing_settings_exit_2(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = likeness(capsys, tmp_path, "team-looks", "list", token=False)
    assert code == 2
    assert "LIKENESS_TOKEN" in err
    assert gateway.requests == []


def test_public_commands_need_no_token(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    published = receipts.jwks([receipts.development_key("s").public_key()])
    gateway.on("GET", "/v1/receipt-keys", reply(published))
    code, out, _ = likeness(capsys, tmp_path, "erasures", "keys", token=False)
    assert code == 0
    assert json.loads(out) == published
    assert "Authorization" not in gateway.requests[0].headers


def test_a_receipt_is_verified_against_the_published_keys(
    gateway: Gateway, receipt_facts: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key = receipts.development_key("stack-secret")
    signed = receipts.sign_receipt(receipt_facts, key)
    gateway.on("GET", "/v1/erasures/{erasure_id}/receipt", reply(signed))
    gateway.on("GET", "/v1/receipt-keys", reply(receipts.jwks([key.public_key()])))

    code, out, err = likeness(capsys, tmp_path, "erasures", "receipt", "era_01j0000000000000000000000a")
    assert code == 0, err
    assert json.loads(out) == signed
    assert "VALID: signed by a key the gateway publishes" in err
    assert "84 objects, 1234567 bytes" in err
    saved = tmp_path / "receipt.json"
    code, out, _ = likeness(capsys, tmp_path, "erasures", "receipt", "era_1", "--out", str(saved))
    assert (code, out) == (0, "")
    assert receipts.verify_receipt_text(
        saved.read_text(), {receipts.key_id(key.public_key()): key.public_key()}
    )

    tampered = json.loads(json.dumps(signed))
    tampered["receipt"]["objects_deleted"] = 85
    gateway.on("GET", "/v1/erasures/{erasure_id}/receipt", reply(tampered))
    code, out, err = likeness(capsys, tmp_path, "erasures", "receipt", "era_1")
    assert code == 1
    assert out == ""
    assert "NOT VALID: the signature does not match" in err


def test_team_looks_are_set_listed_and_deleted(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    gateway.on("PUT", "/v1/team-looks/{look_id}", reply(LOOK))
    gateway.on(
        "GET", "/v1/team-looks", reply({"looks": [LOOK, LOOK | {"id": "eng", "seed_policy": "per_render"}]})
    )
    gateway.on("DELETE", "/v1/team-looks/{look_id}", lambda request: httpx.Response(204))
    options = ["--name", "Sales", "--style", "linkedin", "--background", "light_gray"]
    code, out, err = likeness(capsys, tmp_path, "team-looks", "set", "sales", *options)
    assert code == 0, err
    assert json.loads(out)["seed"] == 1234
    assert json.loads(gateway.requests[-1].content) == {
        "name": "Sales",
        "style": "linkedin",
        "background": "light_gray",
        "seed_policy": "fixed",
    }, "no seed given: the gateway picks one"

    code, out, _ = likeness(capsys, tmp_path, "team-looks", "list")
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["LOOK", "NAME", "STYLE", "BACKGROUND", "SEEDS"]
    assert rows[1] == ["sales", "Sales", "linkedin", "light_gray", "fixed", "1234"]
    assert rows[2] == ["eng", "Sales", "linkedin", "light_gray", "per", "render"]

    code, _, err = likeness(capsys, tmp_path, "team-looks", "delete", "sales")
    assert code == 0
    assert "team look sales deleted" in err
    assert gateway.requests[-1].method == "DELETE"


def test_a_list_shows_one_page_and_says_how_to_get_the_next(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def subjects(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("cursor")
        ids, following = (["sub_2"], None) if after == "c1" else (["sub_1"], "c1")
        page = [{"id": s, "status": "active", "created_at": "2026-01-02T03:04:05Z"} for s in ids]
        return httpx.Response(200, json={"subjects": page, "next_cursor": following})

    gateway.on("GET", "/v1/subjects", subjects)
    code, out, err = likeness(capsys, tmp_path, "subjects", "list", "--limit", "1")
    assert code == 0
    assert out.splitlines()[1].split() == ["sub_1", "active", "2026-01-02T03:04:05+00:00", "-"]
    assert "more: pass --cursor c1" in err
    code, out, err = likeness(capsys, tmp_path, "subjects", "list", "--all", "--json")
    assert code == 0
    assert [s["id"] for s in json.loads(out)] == ["sub_1", "sub_2"]
    assert "more:" not in err


def test_a_render_needs_a_style_or_a_team_look(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = likeness(capsys, tmp_path, "renders", "create", "sub_1", "--training", "trn_1")
    assert code == 2
    assert "--style" in err
    assert gateway.requests == []
    gateway.on("POST", "/v1/subjects/{subject_id}/renders", reply({"id": "ren_1", "status": "queued"}, 202))
    code, out, _ = likeness(
        capsys, tmp_path, "renders", "create", "sub_1", "--training", "trn_1", "--team-look", "sales"
    )
    assert (code, out.strip()) == (0, "ren_1")
    assert json.loads(gateway.requests[-1].content) == {
        "training_id": "trn_1",
        "styles": [],
        "team_look_id": "sales",
    }


def test_cancel_prints_the_new_status(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cancelled = {"id": "trn_1", "subject_id": "sub_1", "status": "cancelled", "progress": {"step": 2}}
    gateway.on("POST", "/v1/trainings/{training_id}/cancel", reply(cancelled, 202))
    code, out, _ = likeness(capsys, tmp_path, "trainings", "cancel", "trn_1")
    assert (code, out.strip()) == (0, "cancelled")
    assert gateway.requests[0].headers["Idempotency-Key"]


def test_not_ready_exits_1(gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    down = {"error": {"code": "not_ready", "message": "Not serving: renderer."}}
    gateway.on("GET", "/readyz", reply(down, 503))
    code, _, err = likeness(capsys, tmp_path, "gateway", "ready", token=False)
    assert code == 1
    assert "Not serving: renderer." in err
    gateway.on("GET", "/readyz", reply({"status": "ready", "backends": {"nats": True, "renderer": True}}))
    code, out, _ = likeness(capsys, tmp_path, "gateway", "ready", token=False)
    assert code == 0
    assert out.splitlines()[-1] == "ready"


def test_a_render_chooses_catalog_background_outfit_and_lighting(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    gateway.on("POST", "/v1/subjects/{subject_id}/renders", reply({"id": "ren_1", "status": "queued"}, 202))
    choices = ["--background", "brick_wall", "--outfit", "navy_suit", "--lighting", "rembrandt"]
    code, out, _ = likeness(
        capsys,
        tmp_path,
        "renders",
        "create",
        "sub_1",
        "--training",
        "trn_1",
        "--style",
        "corporate",
        *choices,
    )
    assert (code, out.strip()) == (0, "ren_1")
    assert json.loads(gateway.requests[-1].content) == {
        "training_id": "trn_1",
        "styles": ["corporate"],
        "background": "brick_wall",
        "outfit": "navy_suit",
        "lighting": "rembrandt",
    }


def test_styles_list_shows_every_kind_of_choice_with_its_preview(
    gateway: Gateway, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    option = {"description": "words", "preview": "Shown to people."}
    catalog = {
        "styles": [{"id": "corporate", "name": "Corporate", "description": "Business"}],
        "backgrounds": [{"id": "brick_wall", "name": "Brick", **option}],
        "outfits": [{"id": "navy_suit", "name": "Navy", **option}],
        "lighting_setups": [{"id": "rembrandt", "name": "Rembrandt", **option}],
    }
    gateway.on("GET", "/v1/styles", reply(catalog))
    code, out, _ = likeness(capsys, tmp_path, "styles", "list")
    assert code == 0
    rows = [line.split(maxsplit=3) for line in out.splitlines()[1:]]
    assert [row[:2] for row in rows] == [
        ["style", "corporate"],
        ["background", "brick_wall"],
        ["outfit", "navy_suit"],
        ["lighting", "rembrandt"],
    ]
    assert all(row[3] == "Shown to people." for row in rows[1:])
