"""Who may see what: path ids, end-user tokens bound to one subject, tenants, and erased subjects.

Everything a caller may not see answers the same 404 `not_found` as what does not exist (a malformed id,
another tenant's id, another subject's resource), so existence cannot be probed. Services answer
NOT_FOUND for ids outside the tenant they are given, and the tenant always comes from the token.

A token touches a subject only as its end user's token (`sub`) or with `tenant:all` (`Principal.can_touch`);
the services check the same again with the token the gateway forwards, so these checks save round trips
and keep answers uniform, while the boundary holds even if the gateway does not.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from gateway.auth import Principal
from gateway.backends import Backends
from gateway.errors import ApiError, not_found, subject_erased
from gateway.job_cache import Invalidations, JobCache
from gateway.single_flight import SingleFlight
from likeness.ids import is_valid_id
from likeness.v1 import renderer_pb2, retention_pb2, trainer_pb2

T = TypeVar("T")

_GONE = (retention_pb2.SUBJECT_STATUS_ERASING, retention_pb2.SUBJECT_STATUS_ERASED)


def require_id(value: str, prefix: str) -> str:
    if not is_valid_id(value, prefix):
        raise not_found()
    return value


async def hide_missing(call: Awaitable[T]) -> T:
    """A backend's NOT_FOUND (whatever its own code) becomes the gateway's one `not_found`."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise not_found() from None
        raise


async def subject_record(backends: Backends, principal: Principal, subject_id: str) -> retention_pb2.Subject:
    """The subject as retention has it, erased or not (404 when the token may not see it)."""
    require_id(subject_id, "sub")
    if not principal.can_touch(subject_id):
        raise await refused(backends, principal, subject_id)
    return await _read_subject(backends, principal.tenant, subject_id)


async def refused(backends: Backends, principal: Principal, subject_id: str) -> ApiError:
    """The 404 for a subject the token may not touch, once retention has been told of the attempt: asked
    for the subject with this token, it refuses it too and records `access.denied` on the person's log
    when the subject exists (the gateway holds no audit secret; retention, which owns subjects, writes
    the record). Whatever retention answers, the caller gets the same 404 as for no such subject."""
    request = retention_pb2.GetSubjectRequest(tenant=principal.tenant, subject_id=subject_id)
    with contextlib.suppress(grpc.aio.AioRpcError):
        await backends.retention.GetSubject(request, timeout=backends.timeout)
    return not_found()


async def live_subject(backends: Backends, principal: Principal, subject_id: str) -> retention_pb2.Subject:
    """The subject, if the token may see it and it is not being or has not been erased (else 410)."""
    subject = await subject_record(backends, principal, subject_id)
    if subject.status in _GONE:
        raise subject_erased()
    return subject


class LiveSubjects:
    """Subjects recently seen active, so reads of their jobs need not ask retention every time.

    Only "active" is remembered, for `ttl` seconds (`LIKENESS_SUBJECT_STATUS_CACHE_SECONDS`; 0 turns it
    off), and forgotten at once when this gateway erases the subject or any replica's `subject.erased`
    event arrives; a read that raced the forgetting is not remembered. Concurrent reads of one subject share
    one retention call. Writes (uploads, trainings, renders, erasure) always ask retention afresh.
    """

    def __init__(self, ttl: float, max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._until: dict[tuple[str, str], float] = {}
        self._forgotten = Invalidations(max_entries)
        self.reads: SingleFlight[tuple[str, str], retention_pb2.Subject] = SingleFlight()

    def is_live(self, tenant: str, subject_id: str) -> bool:
        until = self._until.get((tenant, subject_id))
        return until is not None and time.monotonic() < until

    def stamp(self) -> int:
        """Taken before reading a subject's status, for `remember`."""
        return self._forgotten.stamp()

    def remember(self, tenant: str, subject_id: str, stamp: int | None = None) -> None:
        if self.ttl <= 0:
            return
        if stamp is not None and self._forgotten.since((tenant, subject_id), stamp):
            return  # forgotten while it was read: the "active" may predate the erasure
        if len(self._until) >= self.max_entries:
            self._until.clear()  # rare: a bound, not an eviction policy worth more code
        self._until[(tenant, subject_id)] = time.monotonic() + self.ttl

    def forget(self, tenant: str, subject_id: str) -> None:
        self._forgotten.invalidate((tenant, subject_id))
        self._until.pop((tenant, subject_id), None)


async def live_subject_cached(
    backends: Backends, principal: Principal, subject_id: str, live: LiveSubjects | None
) -> None:
    if live is None or live.ttl <= 0:
        await live_subject(backends, principal, subject_id)
        return
    tenant = principal.tenant
    if principal.can_touch(subject_id) and live.is_live(tenant, subject_id):
        return
    require_id(subject_id, "sub")
    if not principal.can_touch(subject_id):
        raise await refused(backends, principal, subject_id)

    async def read_and_remember() -> retention_pb2.Subject:
        # Stamped where the (possibly shared) read starts: a forget after that point wins.
        stamp = live.stamp()
        subject = await _read_subject(backends, tenant, subject_id)
        if subject.status not in _GONE:
            live.remember(tenant, subject_id, stamp)
        return subject

    subject = await live.reads.run((tenant, subject_id), read_and_remember)
    if subject.status in _GONE:
        raise subject_erased()


async def _read_subject(backends: Backends, tenant: str, subject_id: str) -> retention_pb2.Subject:
    request = retention_pb2.GetSubjectRequest(tenant=tenant, subject_id=subject_id)
    return (await hide_missing(backends.retention.GetSubject(request, timeout=backends.timeout))).subject


async def owned_training(
    backends: Backends, principal: Principal, training_id: str, live: LiveSubjects | None = None
) -> trainer_pb2.Training:
    require_id(training_id, "trn")
    request = trainer_pb2.GetTrainingRequest(tenant=principal.tenant, training_id=training_id)
    training = (await hide_missing(backends.trainer.GetTraining(request, timeout=backends.timeout))).training
    if not principal.can_touch(training.subject_id):
        raise not_found()
    await live_subject_cached(backends, principal, training.subject_id, live)
    return training


async def owned_render(
    backends: Backends, principal: Principal, render_id: str, live: LiveSubjects | None = None
) -> renderer_pb2.Render:
    require_id(render_id, "ren")
    request = renderer_pb2.GetRenderRequest(tenant=principal.tenant, render_id=render_id)
    render = (await hide_missing(backends.renderer.GetRender(request, timeout=backends.timeout))).render
    if not principal.can_touch(render.subject_id):
        raise not_found()
    await live_subject_cached(backends, principal, render.subject_id, live)
    return render


async def cached_job_json(
    backends: Backends,
    principal: Principal,
    job_id: str,
    prefix: str,
    live: LiveSubjects,
    cache: JobCache,
    fetch: Callable[[], Awaitable[tuple[str, bytes]]],
) -> bytes:
    """The JSON of a training or render, from the short-lived job cache when it is there.

    `fetch` reads the job for the token's tenant and gives its subject and JSON; it authorizes nothing, so
    concurrent misses of one job may share it. Authorization runs on every request, whichever way the job
    came: the tenant is the token's (and part of the key), an end-user token must own the job's subject,
    and the subject must be live (else 410)."""
    require_id(job_id, prefix)
    tenant = principal.tenant
    cached = cache.get(tenant, job_id) if cache.enabled else None
    if cached is not None:
        subject_id, body = cached.subject_id, cached.body
    elif cache.enabled:

        async def read_and_keep() -> tuple[str, bytes]:
            stamp = cache.stamp()
            subject_id, body = await fetch()
            cache.put(tenant, job_id, subject_id, body, stamp)
            return subject_id, body

        if principal.tenant_wide:
            subject_id, body = await cache.reads.run((tenant, job_id), read_and_keep)
        else:
            # An end user's read goes under that user's token, which the backend checks against the job's
            # subject: shared, another user's "not found" could answer a request that may see the job.
            subject_id, body = await read_and_keep()
    else:
        subject_id, body = await fetch()
    if not principal.can_touch(subject_id):
        raise not_found()
    try:
        await live_subject_cached(backends, principal, subject_id, live)
    except ApiError as error:
        if error.status == 410:  # nothing of an erased subject is kept, even for a moment
            cache.invalidate_subject(tenant, subject_id)
        raise
    return body
