"""The blocking client against httpx.MockTransport: retries and backoff, idempotency keys, errors,
pagination, progress streams and downloads (pure client logic; the real gateway is in tests/)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from likeness_client import (
    BadRequest,
    Gone,
    LikenessClient,
    LikenessError,
    NotFound,
    RateLimited,
    RenderChoices,
    Retention,
    RetryPolicy,
    ServerSentEvent,
    SSEDecoder,
    StreamError,
    TeamLookSpec,
    TransportError,
    Unavailable,
    UploadRejected,
    calls,
)

BASE = "http://gateway.test"
SUBJECT = {
    "id": "sub_1",
    "status": "active",
    "created_at": "2026-01-02T03:04:05Z",
    "consent": {"purpose": "headshots", "policy_version": "2026-01", "given_at": "2026-01-02T03:04:05Z"},
    "retention": {
        "photos_days": 30,
        "photos_deleted_after_training": True,
        "models_days": 365,
        "renders_days": 365,
        "inactivity_days": 365,
    },
    "delete_by": None,
    "a_field_from_a_newer_gateway": 1,
}


def training(status: str, step: int, total: int = 4) -> dict[str, Any]:
    return {
        "id": "trn_1",
        "subject_id": "sub_1",
        "status": status,
        "progress": {"step": step, "total_steps": total},
        "error": None,
        "created_at": None,
        "updated_at": None,
    }


def error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        json={"error": {"code": code, "message": f"{code} happened"}},
        headers={"X-Request-Id": f"req-{code}", **(headers or {})},
    )


class Recorder:
    """A MockTransport handler answering from a list of responses (or callables), recording requests."""

    def __init__(
        self, *answers: httpx.Response | Callable[[httpx.Request], httpx.Response] | Exception
    ) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer


def client_for(handler: Recorder, sleeps: list[float], **retry: Any) -> LikenessClient:
    policy = RetryPolicy(random=lambda: 0.5, **retry)
    return LikenessClient(
        BASE, "tok", retry=policy, transport=httpx.MockTransport(handler), sleep=sleeps.append
    )


def test_429_is_retried_after_retry_after_with_one_idempotency_key() -> None:
    handler = Recorder(
        error(429, "rate_limited", {"Retry-After": "3"}),
        error(503, "unavailable"),
        httpx.Response(201, json=SUBJECT),
    )
    sleeps: list[float] = []
    with client_for(handler, sleeps) as client:
        subject = client.create_subject(purpose="headshots", policy_version="2026-01", external_ref="u-1")

    assert subject.id == "sub_1"
    assert subject.consent is not None
    assert subject.consent.purpose == "headshots"
    assert len(handler.requests) == 3
    keys = {request.headers["Idempotency-Key"] for request in handler.requests}
    assert len(keys) == 1, "every retry of one call carries the same key"
    assert sleeps[0] == 3.0, "never sooner than Retry-After"
    assert sleeps[1] == 0.5 * 0.5 * 2, "then exponential backoff with jitter (attempt 2: ceiling 1.0)"
    body = json.loads(handler.requests[0].content)
    assert body == {"consent": {"purpose": "headshots", "policy_version": "2026-01"}, "external_ref": "u-1"}
    assert handler.requests[0].headers["Authorization"] == "Bearer tok"


def test_each_post_gets_its_own_key_and_gets_have_none() -> None:
    handler = Recorder(lambda r: httpx.Response(202, json={"id": "trn_1", "status": "queued"}))
    with client_for(handler, []) as client:
        client.create_training("sub_1")
        client.create_training("sub_1", steps=10)
        handler.answers = [httpx.Response(200, json=training("queued", 0))]
        client.get_training("trn_1")
    first, second, get = handler.requests
    assert first.headers["Idempotency-Key"] != second.headers["Idempotency-Key"]
    assert "Idempotency-Key" not in get.headers
    assert json.loads(first.content) == {}
    assert json.loads(second.content) == {"steps": 10}


def test_503_gives_up_after_max_attempts_with_the_api_error() -> None:
    handler = Recorder(error(503, "unavailable"))
    sleeps: list[float] = []
    with client_for(handler, sleeps, max_attempts=3) as client, pytest.raises(Unavailable) as raised:
        client.get_subject("sub_1")
    assert len(handler.requests) == 3
    assert len(sleeps) == 2
    assert raised.value.status == 503
    assert raised.value.code == "unavailable"
    assert raised.value.message == "unavailable happened"
    assert raised.value.request_id == "req-unavailable"


def test_sse_decoder_follows_the_rules() -> None:
    decoder = SSEDecoder()
    lines = [
        ": comment",
        "event: progress",
        "id: 4",
        "data: one",
        "data:two",
        "retry: 250",
        "",
        "",
        "data: x",
        "",
    ]
    events = [event for line in lines if (event := decoder.feed(line)) is not None]
    assert events == [
        ServerSentEvent(event="progress", data="one\ntwo", id="4", retry=250),
        ServerSentEvent(event="message", data="x", id="4"),
    ]


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=5.0, random=lambda: 0.999)
    waits = [policy.delay(attempt, None) for attempt in range(1, 10)]
    assert [round(w or 0, 2) for w in waits] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]
    assert policy.delay(10, None) is None
    low = RetryPolicy(random=lambda: 0.0)
    assert low.delay(1, None) == 0.0, "full jitter reaches down to zero"
    assert low.delay(1, 7.0) == 7.0


def test_a_retry_after_too_long_is_not_waited_out() -> None:
    handler = Recorder(error(429, "rate_limited", {"Retry-After": "3600"}))
    sleeps: list[float] = []
    with client_for(handler, sleeps) as client, pytest.raises(RateLimited) as raised:
        client.list_styles()
    assert raised.value.retry_after == 3600.0
    assert len(handler.requests) == 1
    assert sleeps == []


def test_client_errors_are_not_retried() -> None:
    handler = Recorder(error(404, "not_found"))
    sleeps: list[float] = []
    with client_for(handler, sleeps) as client, pytest.raises(NotFound) as raised:
        client.get_render("ren_x")
    assert len(handler.requests) == 1
    assert sleeps == []
    assert str(raised.value) == "not_found happened (not_found, HTTP 404, request req-not_found)"


def test_unreachable_gateway_is_retried_then_reported() -> None:
    handler = Recorder(httpx.ConnectError("refused"), httpx.Response(200, json=SUBJECT))
    sleeps: list[float] = []
    with client_for(handler, sleeps) as client:
        assert client.get_subject("sub_1").id == "sub_1"
    assert len(sleeps) == 1
    never = Recorder(httpx.ConnectError("refused"))
    with client_for(never, [], max_attempts=2) as client, pytest.raises(TransportError):
        client.get_subject("sub_1")
    assert len(never.requests) == 2


def test_ids_cannot_change_the_route() -> None:
    handler = Recorder(error(404, "not_found"))
    with client_for(handler, []) as client, pytest.raises(NotFound):
        client.get_subject("../erasures/era_1")
    assert handler.requests[0].url.raw_path == b"/v1/subjects/..%2Ferasures%2Fera_1"


def test_pages_follow_the_cursor_until_there_is_none() -> None:
    pages = {
        None: {"subjects": [SUBJECT | {"id": "sub_1"}, SUBJECT | {"id": "sub_2"}], "next_cursor": "c1"},
        "c1": {"subjects": [SUBJECT | {"id": "sub_3"}], "next_cursor": "c2"},
        "c2": {"subjects": [], "next_cursor": None},
    }
    handler = Recorder(lambda r: httpx.Response(200, json=pages[r.url.params.get("cursor")]))
    with client_for(handler, []) as client:
        ids = [subject.id for subject in client.iter_subjects(page_size=2)]
        page = client.list_subjects(limit=2, cursor="c1")
    assert ids == ["sub_1", "sub_2", "sub_3"]
    assert [dict(r.url.params) for r in handler.requests[:3]] == [
        {"limit": "2"},
        {"limit": "2", "cursor": "c1"},
        {"limit": "2", "cursor": "c2"},
    ]
    assert page.next_cursor == "c2"
    assert [s.id for s in page.items] == ["sub_3"]


def test_a_list_without_cursor_is_one_page_and_a_repeated_cursor_stops() -> None:
    handler = Recorder(httpx.Response(200, json={"photos": [{"id": "pho_1", "status": "accepted"}]}))
    with client_for(handler, []) as client:
        assert [p.id for p in client.iter_photos("sub_1")] == ["pho_1"]
    looping = Recorder(
        httpx.Response(200, json={"trainings": [training("queued", 0)], "next_cursor": "same"})
    )
    with client_for(looping, []) as client, pytest.raises(LikenessError, match="cursor"):
        list(client.iter_trainings("sub_1"))


def test_an_upload_with_every_photo_rejected_raises_with_the_verdicts(tmp_path: Path) -> None:
    photo = tmp_path / "me.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0 not really")
    verdict = {
        "id": "pho_1",
        "filename": "me.jpg",
        "status": "rejected",
        "reasons": [{"code": "no_face", "message": "No face was found."}],
    }
    handler = Recorder(
        httpx.Response(422, json={"error": {"code": "no_face", "message": "No face."}, "photos": [verdict]})
    )
    with client_for(handler, []) as client, pytest.raises(UploadRejected) as raised:
        client.upload_photos("sub_1", [photo, ("second.png", b"\x89PNG")], prepare=False)
    assert isinstance(raised.value, UploadRejected)
    assert raised.value.status == 422
    assert raised.value.code == "no_face"
    assert raised.value.photos[0].reasons[0].code == "no_face"
    sent = handler.requests[0]
    assert sent.headers["content-type"].startswith("multipart/form-data")
    assert b'filename="me.jpg"' in sent.content
    assert b'filename="second.png"' in sent.content
    assert b"Content-Type: image/jpeg" in sent.content


def test_422_without_photos_is_a_bad_request() -> None:
    handler = Recorder(error(422, "invalid_request"))
    with client_for(handler, []) as client, pytest.raises(BadRequest):
        client.create_render("sub_1", training_id="trn_1", styles=[])


def sse(*blocks: str) -> bytes:
    return "".join(blocks).encode()


def event(name: str, data: dict[str, Any], event_id: str | None = None) -> str:
    lines = (
        [f"event: {name}"] + ([f"id: {event_id}"] if event_id else []) + [f"data: {json.dumps(data)}", "", ""]
    )
    return "\n".join(lines)


def test_watch_yields_progress_until_end_and_skips_heartbeats() -> None:
    body = sse(
        ": heartbeat\n\n",
        event("progress", training("queued", 0)),
        ": heartbeat\n\n",
        event("progress", training("running", 2)),
        event("end", training("succeeded", 4)),
        event("progress", training("running", 3)),  # nothing after `end` is read
    )
    handler = Recorder(httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}))
    with client_for(handler, []) as client:
        states = list(client.watch_training("trn_1"))
    assert [(s.status, s.progress.step) for s in states] == [("queued", 0), ("running", 2), ("succeeded", 4)]
    assert states[-1].done
    assert states[1].progress.fraction == 0.5
    assert handler.requests[0].url.path == "/v1/trainings/trn_1/events"
    assert handler.requests[0].headers["Accept"] == "text/event-stream"


def test_watch_reopens_a_stream_cut_before_its_end() -> None:
    handler = Recorder(
        httpx.Response(200, content=sse(event("progress", training("running", 1), event_id="7"))),
        httpx.Response(
            200, content=sse(event("progress", training("running", 2)), event("end", training("failed", 2)))
        ),
    )
    sleeps: list[float] = []
    with client_for(handler, sleeps) as client:
        states = list(client.watch_training("trn_1"))
    assert [s.status for s in states] == ["running", "running", "failed"]
    assert handler.requests[1].headers["Last-Event-ID"] == "7"
    assert len(sleeps) == 1


def test_watch_gives_up_when_streams_keep_ending_early() -> None:
    handler = Recorder(httpx.Response(200, content=sse(": heartbeat\n\n")))
    with client_for(handler, [], max_attempts=3) as client, pytest.raises(StreamError):
        list(client.watch_training("trn_1"))
    assert len(handler.requests) == 3


class CutStream(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b"PK\x03\x04 the beginning of a zip"
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


def test_export_writes_the_file_only_when_complete(tmp_path: Path) -> None:
    handler = Recorder(
        httpx.Response(200, content=b"PK whole archive", headers={"content-type": "application/zip"})
    )
    target = tmp_path / "export.zip"
    with client_for(handler, []) as client:
        assert client.export_subject("sub_1", target) == len(b"PK whole archive")
    assert target.read_bytes() == b"PK whole archive"
    assert handler.requests[0].url.path == "/v1/subjects/sub_1/export"

    cut = Recorder(httpx.Response(200, stream=CutStream()))
    broken = tmp_path / "broken.zip"
    with client_for(cut, []) as client, pytest.raises(TransportError, match="cut short"):
        client.export_subject("sub_1", broken)
    assert not list(tmp_path.glob("broken*")), "no half export is left behind"


def test_download_render_saves_every_image(tmp_path: Path) -> None:
    render = {
        "id": "ren_1",
        "subject_id": "sub_1",
        "training_id": "trn_1",
        "status": "succeeded",
        "styles": ["linkedin"],
        "images_per_style": 2,
        "progress": {"step": 2, "total_steps": 2},
        "images": [
            {"id": f"img_{n}", "style": "linkedin", "seed": n, "url": f"/v1/renders/ren_1/images/img_{n}"}
            for n in (1, 2)
        ],
    }

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/renders/ren_1":
            return httpx.Response(200, json=render)
        image_id = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, content=image_id.encode() * 3, headers={"content-type": "image/png"})

    with client_for(Recorder(answer), []) as client:
        saved = client.download_render("ren_1", tmp_path / "out")
    assert [p.name for p in saved] == ["img_1.png", "img_2.png"]
    assert saved[1].read_bytes() == b"img_2img_2img_2"


def test_errors_of_streamed_calls_are_api_errors_too() -> None:
    handler = Recorder(error(410, "subject_erased"))
    with client_for(handler, []) as client, pytest.raises(LikenessError) as raised:
        client.download_image("ren_1", "img_1")
    assert getattr(raised.value, "code", None) == "subject_erased"


def test_an_error_event_ends_the_watch_with_its_api_error() -> None:
    gone = {"error": {"code": "subject_erased", "message": "Erased.", "request_id": "req-9"}}
    body = sse(event("progress", training("running", 1)), f"event: error\ndata: {json.dumps(gone)}\n\n")
    handler = Recorder(httpx.Response(200, content=body))
    seen: list[str] = []
    with client_for(handler, []) as client, pytest.raises(Gone) as raised:
        seen.extend(state.status for state in client.watch_training("trn_1"))
    assert seen == ["running"]
    assert raised.value.status == 410
    assert raised.value.request_id == "req-9"
    assert len(handler.requests) == 1, "an error event is final: no reconnect"


def test_a_subject_delete_carries_an_idempotency_key_and_puts_none() -> None:
    handler = Recorder(httpx.Response(202, json={"erasure_id": "era_1", "status": "pending"}))
    with client_for(handler, []) as client:
        assert client.erase_subject("sub_1").erasure_id == "era_1"
        handler.answers = [httpx.Response(204)]
        assert client.delete_team_look("sales") is None
    erase, delete = handler.requests
    assert erase.method == "DELETE"
    assert erase.headers["Idempotency-Key"], "a retried erasure gets its first 202 again"
    assert "Idempotency-Key" not in delete.headers


LOOK = {
    "id": "sales",
    "name": "Sales",
    "style": "linkedin",
    "background": "light_gray",
    "seed_policy": "fixed",
    "seed": 77,
    "created_at": "2026-01-02T03:04:05Z",
    "updated_at": None,
}


def test_team_looks_are_put_read_and_listed() -> None:
    handler = Recorder(httpx.Response(200, json=LOOK))
    with client_for(handler, []) as client:
        look = client.put_team_look(
            "sales", TeamLookSpec(name="Sales", style="linkedin", background="light_gray")
        )
        handler.answers = [httpx.Response(200, json={"looks": [LOOK]})]
        listed = client.list_team_looks()
    assert look.seed == 77
    assert listed == [look]
    put = handler.requests[0]
    assert (put.method, put.url.path) == ("PUT", "/v1/team-looks/sales")
    assert json.loads(put.content) == {
        "name": "Sales",
        "style": "linkedin",
        "background": "light_gray",
        "seed_policy": "fixed",
    }


def test_the_retention_policy_is_set_whole_and_read_back_in_words() -> None:
    policy = {
        "schedule": {
            "photos_days": 7,
            "photos_deleted_after_training": False,
            "models_days": 365,
            "renders_days": 365,
            "inactivity_days": 365,
        },
        "tenant_specific": True,
        "hard_cap_days": 1095,
        "backups_retention_days": 30,
        "text": "Photos are deleted 7 days after upload.",
    }
    handler = Recorder(httpx.Response(200, json=policy))
    with client_for(handler, []) as client:
        answer = client.set_retention_policy(Retention(photos_days=7))
    assert answer.text == policy["text"]
    assert answer.schedule.models_days == 365
    sent = handler.requests[0]
    assert sent.method == "PUT"
    assert json.loads(sent.content) == {
        "photos_days": 7,
        "photos_deleted_after_training": False,
        "models_days": 0,
        "renders_days": 0,
        "inactivity_days": 0,
    }


def test_a_render_can_follow_a_team_look_and_the_catalog_has_backgrounds() -> None:
    handler = Recorder(httpx.Response(202, json={"id": "ren_1", "status": "queued"}))
    with client_for(handler, []) as client:
        client.create_render("sub_1", training_id="trn_1", team_look_id="sales")
        catalog = {
            "styles": [{"id": "linkedin", "name": "LinkedIn", "description": "d"}],
            "backgrounds": [{"id": "light_gray", "name": "Light gray", "description": "plain"}],
        }
        handler.answers = [httpx.Response(200, json=catalog)]
        assert [b.id for b in client.get_catalog().backgrounds] == ["light_gray"]
    assert json.loads(handler.requests[0].content) == {
        "training_id": "trn_1",
        "styles": [],
        "team_look_id": "sales",
    }


def test_a_render_sends_its_priority_only_when_given() -> None:
    handler = Recorder(httpx.Response(202, json={"id": "ren_1", "status": "queued"}))
    with client_for(handler, []) as client:
        client.create_render("sub_1", training_id="trn_1", styles=["corporate"], priority="bulk")
        handler.answers = [httpx.Response(202, json={"id": "ren_2", "status": "queued"})]
        client.create_render("sub_1", training_id="trn_1", styles=["corporate"])
    assert json.loads(handler.requests[0].content)["priority"] == "bulk"
    assert "priority" not in json.loads(handler.requests[1].content), "absent: the service's default"


def test_a_render_sends_its_catalog_choices_and_the_catalog_lists_them() -> None:
    handler = Recorder(httpx.Response(202, json={"id": "ren_1", "status": "queued"}))
    with client_for(handler, []) as client:
        choices = RenderChoices(background="brick_wall", lighting="rembrandt")
        client.create_render("sub_1", training_id="trn_1", styles=["corporate"], choices=choices)
        option = {"description": "words", "preview": "For people."}
        catalog = {
            "styles": [{"id": "corporate", "name": "Corporate", "description": "d"}],
            "outfits": [{"id": "navy_suit", "name": "Navy suit", **option}],
            "lighting_setups": [{"id": "rembrandt", "name": "Rembrandt", **option}],
        }
        handler.answers = [httpx.Response(200, json=catalog)]
        listed = client.get_catalog()
    assert [o.id for o in listed.outfits] == ["navy_suit"]
    assert [light.preview for light in listed.lighting_setups] == ["For people."]
    assert json.loads(handler.requests[0].content) == {
        "training_id": "trn_1",
        "styles": ["corporate"],
        "background": "brick_wall",
        "lighting": "rembrandt",
    }, "an outfit left out is not sent: the style's own stays"


def test_a_receipt_and_the_published_keys_are_read_as_sent() -> None:
    receipt = {
        "receipt": {"erasure_id": "era_1", "objects_deleted": 3},
        "signature": {"alg": "Ed25519", "kid": "k", "value": "c2ln"},
    }
    keys = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "abc", "kid": "k"}]}
    handler = Recorder(httpx.Response(200, json=receipt))
    with client_for(handler, []) as client:
        got = client.get_erasure_receipt("era_1")
        handler.answers = [httpx.Response(200, json=keys)]
        published = client.get_receipt_keys()
    assert got.model_dump(mode="json") == receipt, "the facts stay exactly as signed"
    assert published.keys == keys["keys"]
    assert handler.requests[0].url.path == "/v1/erasures/era_1/receipt"


def test_without_a_token_no_authorization_is_sent() -> None:
    handler = Recorder(httpx.Response(200, json={"status": "ok"}))
    with LikenessClient(BASE, "", transport=httpx.MockTransport(handler)) as client:
        assert client.get_health().status == "ok"
    assert "Authorization" not in handler.requests[0].headers


def test_routes_fill_their_templates_with_quoted_ids_and_match_requests() -> None:
    assert calls.GET_IMAGE.path("ren_1", "a/b") == "/v1/renders/ren_1/images/a%2Fb"
    with pytest.raises(ValueError, match="takes 2 ids"):
        calls.GET_IMAGE.path("ren_1")
    assert calls.GET_IMAGE.matches("GET", "/v1/renders/ren_1/images/img_1")
    assert not calls.GET_IMAGE.matches("GET", "/v1/renders/ren_1/images")
    assert not calls.GET_IMAGE.matches("DELETE", "/v1/renders/ren_1/images/img_1")
    assert not calls.LIST_SUBJECTS.matches("GET", "/v1/subjects/sub_1")


def test_usage_reads_the_tenants_quotas_and_a_quota_refusal_is_not_waited_out() -> None:
    usage = {
        "trainings": {"in_flight": 1, "limit": 4},
        "renders": {"in_flight": 16, "limit": 16},
        "gpu_seconds": {"day": "20261205", "seconds": 12.5, "limit": 3600.0, "resets_in_seconds": 600},
        "max_training_steps": 3000,
    }
    handler = Recorder(httpx.Response(200, json=usage))
    with client_for(handler, []) as client:
        found = client.get_usage()
    assert (found.renders.in_flight, found.renders.limit, found.gpu_seconds.seconds) == (16, 16, 12.5)
    assert handler.requests[0].url.path == "/v1/usage"

    refusal = {"error": {"code": "quota_exceeded", "message": "used up", "quota": "gpu_seconds_per_day"}}
    refused = Recorder(httpx.Response(429, json=refusal, headers={"Retry-After": "40000"}))
    with client_for(refused, []) as client, pytest.raises(RateLimited) as raised:
        client.create_training("sub_1")
    assert (raised.value.code, raised.value.retry_after) == ("quota_exceeded", 40000)
    assert len(refused.requests) == 1, "a retry after UTC midnight is the caller's decision"
