"""Who may see what: path ids, end-user tokens bound to one subject, tenants, and erased subjects.

Everything a caller may not see answers the same 404 `not_found` as what does not exist (a malformed id,
another tenant's id, another subject's resource), so existence cannot be probed. Services answer
NOT_FOUND for ids outside the tenant they are given, and the tenant always comes from the token.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc

from gateway.auth import Principal
from gateway.backends import Backends
from gateway.errors import not_found, subject_erased
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
        raise not_found()
    request = retention_pb2.GetSubjectRequest(tenant=principal.tenant, subject_id=subject_id)
    response = await hide_missing(backends.retention.GetSubject(request, timeout=backends.timeout))
    return response.subject


async def live_subject(backends: Backends, principal: Principal, subject_id: str) -> retention_pb2.Subject:
    """The subject, if the token may see it and it is not being or has not been erased (else 410)."""
    subject = await subject_record(backends, principal, subject_id)
    if subject.status in _GONE:
        raise subject_erased()
    return subject


async def owned_training(backends: Backends, principal: Principal, training_id: str) -> trainer_pb2.Training:
    require_id(training_id, "trn")
    request = trainer_pb2.GetTrainingRequest(tenant=principal.tenant, training_id=training_id)
    training = (await hide_missing(backends.trainer.GetTraining(request, timeout=backends.timeout))).training
    if not principal.can_touch(training.subject_id):
        raise not_found()
    await live_subject(backends, principal, training.subject_id)
    return training


async def owned_render(backends: Backends, principal: Principal, render_id: str) -> renderer_pb2.Render:
    require_id(render_id, "ren")
    request = renderer_pb2.GetRenderRequest(tenant=principal.tenant, render_id=render_id)
    render = (await hide_missing(backends.renderer.GetRender(request, timeout=backends.timeout))).render
    if not principal.can_touch(render.subject_id):
        raise not_found()
    await live_subject(backends, principal, render.subject_id)
    return render
