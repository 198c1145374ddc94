"""The short-lived read cache of trainings and renders: what drops an entry (the subject's events, its
erasure, a cancel, the TTL, a lost event feed), and that every request is still authorized on its own
(tenant, end-user subject, scope, erased subject) whether or not its answer came from the cache."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest

from gateway.access import LiveSubjects
from gateway.job_cache import MAX_ENTRIES, Invalidations, JobCache
from gateway.single_flight import SingleFlight
from likeness.bus import event_nats_subject
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, events_pb2, retention_pb2

BOUNDARY = "likeness-test-boundary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
CONSENT = {"consent": {"purpose": "headshots", "policy_version": "2025-01"}}
BODY = b'{"id": "trn_x"}'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def listening_cache(ttl: float = 1.0, clock: Callable[[], float] | None = None, **kwargs: int) -> JobCache:
    cache = JobCache(ttl, clock=clock or Clock(), **kwargs)
    cache.listening = True
    return cache


# ------------------------------------------------------------------------------------------ the cache alone


def test_an_entry_is_served_until_its_ttl_from_when_the_read_started() -> None:
    clock = Clock()
    cache = listening_cache(ttl=1.0, clock=clock)
    stamp = cache.stamp()
    clock.now += 0.4  # the read took this long
    cache.put("acme", "trn_a", "sub_a", BODY, stamp)
    entry = cache.get("acme", "trn_a")
    assert entry is not None
    assert (entry.subject_id, entry.body) == ("sub_a", BODY)
    clock.now += 0.59
    assert cache.get("acme", "trn_a") is not None
    clock.now += 0.01
    assert cache.get("acme", "trn_a") is None
    assert len(cache) == 0


def test_entries_are_per_tenant() -> None:
    cache = listening_cache()
    cache.put("acme", "trn_a", "sub_a", BODY, cache.stamp())
    assert cache.get("globex", "trn_a") is None
    assert cache.get("acme", "trn_a") is not None


def test_an_event_of_the_subject_drops_all_its_jobs_and_only_theirs() -> None:
    cache = listening_cache()
    for job, subject in (("trn_a", "sub_a"), ("ren_a", "sub_a"), ("trn_b", "sub_b")):
        cache.put("acme", job, subject, BODY, cache.stamp())
    cache.put("globex", "trn_g", "sub_a", BODY, cache.stamp())
    cache.invalidate_subject("acme", "sub_a")
    assert cache.get("acme", "trn_a") is None
    assert cache.get("acme", "ren_a") is None
    assert cache.get("acme", "trn_b") is not None
    assert cache.get("globex", "trn_g") is not None  # same subject id, another tenant


def test_a_read_that_raced_an_invalidation_is_not_kept() -> None:
    cache = listening_cache()
    stamp = cache.stamp()
    cache.invalidate_subject("acme", "sub_a")  # the event arrives while the read is in flight
    cache.put("acme", "trn_a", "sub_a", BODY, stamp)
    assert cache.get("acme", "trn_a") is None
    # Another subject's invalidation does not stop it, and a read begun afterwards is kept.
    stamp = cache.stamp()
    cache.invalidate_subject("acme", "sub_other")
    cache.put("acme", "trn_a", "sub_a", BODY, stamp)
    assert cache.get("acme", "trn_a") is not None


def test_nothing_is_kept_without_the_event_feed_and_losing_it_drops_everything() -> None:
    cache = JobCache(1.0, clock=Clock())
    cache.put("acme", "trn_a", "sub_a", BODY, cache.stamp())
    assert cache.get("acme", "trn_a") is None
    cache.listening = True
    stamp = cache.stamp()
    cache.put("acme", "trn_a", "sub_a", BODY, stamp)
    cache.clear()
    assert cache.get("acme", "trn_a") is None
    cache.put("acme", "trn_b", "sub_b", BODY, stamp)  # read before the feed was lost
    assert cache.get("acme", "trn_b") is None


def test_ttl_zero_turns_it_off() -> None:
    cache = listening_cache(ttl=0)
    assert not cache.enabled
    cache.put("acme", "trn_a", "sub_a", BODY, cache.stamp())
    assert cache.get("acme", "trn_a") is None


def test_the_cache_and_its_invalidation_record_stay_bounded() -> None:
    cache = listening_cache(max_entries=3)
    for i in range(10):
        cache.put("acme", f"trn_{i}", f"sub_{i}", BODY, cache.stamp())
        assert len(cache) <= 3
    invalidations = Invalidations(max_entries=3)
    early = invalidations.stamp()
    for i in range(5):
        invalidations.invalidate(("acme", f"sub_{i}"))
    # The record of sub_0 was dropped to stay bounded: a read stamped before then counts as raced.
    assert invalidations.since(("acme", "sub_0"), early)
    assert not invalidations.since(("acme", "sub_9"), invalidations.stamp())
    assert MAX_ENTRIES >= 1000


def test_a_subject_forgotten_while_it_was_read_is_not_remembered_live() -> None:
    live = LiveSubjects(ttl=5)
    stamp = live.stamp()
    live.forget("acme", "sub_a")
    live.remember("acme", "sub_a", stamp)
    assert not live.is_live("acme", "sub_a")
    live.remember("acme", "sub_a", live.stamp())
    assert live.is_live("acme", "sub_a")


async def test_concurrent_reads_of_one_key_share_one_call() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def read() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return calls

    waiters = [asyncio.create_task(flights.run("k", read)) for _ in range(5)]
    other = asyncio.create_task(flights.run("other", read))
    await asyncio.sleep(0)
    waiters[0].cancel()  # one caller giving up does not cancel the read for the others
    release.set()
    results = await asyncio.gather(*waiters[1:], other)
    assert calls == 2
    assert sorted(set(results)) in ([1, 2], [2, 1], [1], [2])
    assert len(flights) == 0


async def test_a_failed_shared_read_fails_every_waiter_and_is_not_kept() -> None:
    flights: SingleFlight[str, int] = SingleFlight()

    async def read() -> int:
        await asyncio.sleep(0)
        raise LookupError("gone")

    results = await asyncio.gather(*(flights.run("k", read) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(result, LookupError) for result in results)
    assert len(flights) == 0


# ------------------------------------------------------------------------------------------ through the app


def multipart_one() -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + b"\xff\xd8\xff\xe0pixels\r\n" + f"--{BOUNDARY}--\r\n".encode()


async def _training(client, auth) -> tuple[str, str]:
    subject = (await client.post("/v1/subjects", json=CONSENT, headers=auth())).json()["id"]
    upload = await client.post(
        f"/v1/subjects/{subject}/photos", content=multipart_one(), headers={**auth(), **MULTIPART}
    )
    assert upload.status_code == 200, upload.text
    response = await client.post(f"/v1/subjects/{subject}/trainings", json={}, headers=auth())
    assert response.status_code == 202, response.text
    return subject, response.json()["id"]


async def _publish(client, name: str, subject: str, event) -> None:
    await client.app.state.nats.bus.publish(event_nats_subject("acme", subject, name), event)


async def _eventually(check: Callable[[], object], tries: int = 100) -> None:
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never held")


@pytest.fixture
def cached_client(make_client):
    # A TTL far beyond the test: whatever changes an answer here is an event, a cancel or an erasure.
    return make_client(job_cache_seconds=10, subject_status_cache_seconds=10)


async def test_a_polled_training_is_read_once_and_a_progress_event_refreshes_it(
    cached_client, auth, fakes
) -> None:
    async with cached_client as client:
        subject, training = await _training(client, auth)
        first = await client.get(f"/v1/trainings/{training}", headers=auth())
        assert first.status_code == 200
        assert first.json()["status"] == "queued"
        reads = fakes.trainer.reads
        stored = fakes.trainer.trainings[("acme", training)]
        stored.status = common_pb2.JOB_STATUS_RUNNING  # behind the gateway's back: no event yet
        again = await client.get(f"/v1/trainings/{training}", headers=auth())
        assert again.json() == first.json()
        assert fakes.trainer.reads == reads
        assert again.headers["Cache-Control"] == "no-store"
        progress = events_pb2.TrainingProgress(
            tenant="acme",
            subject_id=subject,
            training_id=training,
            step=1,
            total_steps=10,
            at=now_timestamp(),
        )
        await _publish(client, "training.progress", subject, progress)

        async def running() -> bool:
            response = await client.get(f"/v1/trainings/{training}", headers=auth())
            return bool(response.json()["status"] == "running")

        await _eventually(running)


async def test_concurrent_polls_of_a_cold_training_share_one_backend_read(cached_client, auth, fakes) -> None:
    async with cached_client as client:
        _, training = await _training(client, auth)
        reads = fakes.trainer.reads
        responses = await asyncio.gather(
            *(client.get(f"/v1/trainings/{training}", headers=auth()) for _ in range(8))
        )
        assert {response.status_code for response in responses} == {200}
        assert fakes.trainer.reads == reads + 1


async def test_a_cached_training_is_still_authorized_per_request(cached_client, auth, fakes) -> None:
    async with cached_client as client:
        subject, training = await _training(client, auth)
        other_subject = (await client.post("/v1/subjects", json=CONSENT, headers=auth())).json()["id"]
        path = f"/v1/trainings/{training}"
        assert (await client.get(path, headers=auth())).status_code == 200  # now cached
        assert (await client.get(path, headers=auth(tenant="globex"))).status_code == 404
        assert (await client.get(path, headers=auth(subject=other_subject))).status_code == 404
        assert (await client.get(path, headers=auth(subject=subject))).status_code == 200
        assert (await client.get(path, headers=auth(scopes=["renders:read"]))).status_code == 403
        assert (await client.get(path)).status_code == 401
        assert (await client.get(f"{path}x", headers=auth())).status_code == 404


async def test_a_cancel_through_this_gateway_shows_at_once(cached_client, auth) -> None:
    async with cached_client as client:
        _, training = await _training(client, auth)
        assert (await client.get(f"/v1/trainings/{training}", headers=auth())).json()["status"] == "queued"
        cancelled = await client.post(f"/v1/trainings/{training}/cancel", headers=auth())
        assert cancelled.status_code == 202, cancelled.text
        assert (await client.get(f"/v1/trainings/{training}", headers=auth())).json()["status"] == "cancelled"


async def test_an_erased_subject_answers_410_though_its_training_was_cached(
    cached_client, auth, fakes
) -> None:
    async with cached_client as client:
        subject, training = await _training(client, auth)
        assert (await client.get(f"/v1/trainings/{training}", headers=auth())).status_code == 200
        # Erased through this gateway: at once.
        assert (await client.delete(f"/v1/subjects/{subject}", headers=auth())).status_code == 202
        assert (await client.get(f"/v1/trainings/{training}", headers=auth())).status_code == 410

        # Erased elsewhere (another replica, retention's own schedule): when subject.erased arrives.
        other, other_training = await _training(client, auth)
        assert (await client.get(f"/v1/trainings/{other_training}", headers=auth())).status_code == 200
        fakes.retention.subjects[("acme", other)].status = retention_pb2.SUBJECT_STATUS_ERASED
        erased = events_pb2.SubjectErased(
            tenant="acme", subject_id=other, erasure_id="era_x", at=now_timestamp()
        )
        await _publish(client, "subject.erased", other, erased)

        async def gone() -> bool:
            response = await client.get(f"/v1/trainings/{other_training}", headers=auth())
            return response.status_code == 410

        await _eventually(gone)
        assert client.app.state.job_cache.get("acme", other_training) is None


async def test_a_render_is_cached_and_its_completion_event_refreshes_it(cached_client, auth, fakes) -> None:
    async with cached_client as client:
        subject, training = await _training(client, auth)
        fakes.trainer.trainings[("acme", training)].status = common_pb2.JOB_STATUS_SUCCEEDED
        response = await client.post(
            f"/v1/subjects/{subject}/renders",
            json={"training_id": training, "styles": ["corporate"], "images_per_style": 1},
            headers=auth(),
        )
        assert response.status_code == 202, response.text
        render = response.json()["id"]
        first = await client.get(f"/v1/renders/{render}", headers=auth())
        assert first.status_code == 200
        assert first.json()["images"] == []
        fakes.renderer.complete("acme", render, b"\x89PNG\r\n\x1a\nbytes")
        assert (await client.get(f"/v1/renders/{render}", headers=auth())).json() == first.json()
        assert (await client.get(f"/v1/renders/{render}", headers=auth(tenant="globex"))).status_code == 404
        done = events_pb2.RenderCompleted(
            tenant="acme", subject_id=subject, render_id=render, image_count=1, at=now_timestamp()
        )
        await _publish(client, "render.completed", subject, done)

        async def completed() -> bool:
            response = await client.get(f"/v1/renders/{render}", headers=auth())
            return len(response.json()["images"]) == 1

        await _eventually(completed)


async def test_a_backend_failure_is_not_cached(cached_client, auth, fakes) -> None:
    async with cached_client as client:
        subject, training = await _training(client, auth)
        fakes.retention.failures[subject] = (grpc.StatusCode.UNAVAILABLE, "down")
        try:
            assert (await client.get(f"/v1/trainings/{training}", headers=auth())).status_code == 503
        finally:
            del fakes.retention.failures[subject]
        assert (await client.get(f"/v1/trainings/{training}", headers=auth())).status_code == 200
