"""The innermost interceptor's answers: a JetStream request nobody answered is UNAVAILABLE, not INTERNAL."""

from __future__ import annotations

from typing import Any

import grpc
import nats.errors
import nats.js.errors
import pytest

from likeness.rpc_errors import CODE_METADATA_KEY
from likeness.storage_full import BUS_UNAVAILABLE, _unary


class _Context:
    """What `likeness.rpc_errors.abort` touches of a servicer context."""

    def __init__(self) -> None:
        self.trailing: Any = None
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.trailing = metadata

    async def abort(self, status: grpc.StatusCode, message: str) -> None:
        self.aborted = (status, message)
        raise grpc.aio.AbortError()


@pytest.mark.parametrize(
    "error",
    [
        nats.errors.TimeoutError(),
        nats.errors.NoRespondersError(),
        # What every server answers while a JetStream cluster elects its meta leader.
        nats.js.errors.ServiceUnavailableError(
            code=503, err_code=10008, description="JetStream system temporarily unavailable"
        ),
    ],
    ids=["timeout", "no-responders", "jetstream-503"],
)
async def test_a_bus_that_did_not_answer_is_unavailable(error: Exception) -> None:
    async def behavior(request: Any, context: Any) -> Any:
        raise error

    context = _Context()
    with pytest.raises(grpc.aio.AbortError):
        await _unary(behavior)(None, context)
    assert context.aborted is not None
    assert context.aborted[0] == grpc.StatusCode.UNAVAILABLE
    assert context.trailing == ((CODE_METADATA_KEY, BUS_UNAVAILABLE),)


async def test_any_other_error_goes_on_as_it_was() -> None:
    async def behavior(request: Any, context: Any) -> Any:
        raise ValueError("a bug")

    context = _Context()
    with pytest.raises(ValueError, match="a bug"):
        await _unary(behavior)(None, context)
    assert context.aborted is None


async def test_another_jetstream_error_goes_on_as_it_was() -> None:
    error = nats.js.errors.NotFoundError(code=404, err_code=10059, description="stream not found")

    async def behavior(request: Any, context: Any) -> Any:
        raise error

    context = _Context()
    with pytest.raises(nats.js.errors.APIError):
        await _unary(behavior)(None, context)
    assert context.aborted is None
