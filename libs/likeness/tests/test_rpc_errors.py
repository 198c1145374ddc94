"""`status_lost_to_a_late_write`: how grpc.aio reports a client-streaming call that the server ended while a
write was in flight (grpc/grpc#36066), against a real gRPC server on loopback."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from likeness.rpc_errors import CODE_METADATA_KEY, abort, error_code, status_lost_to_a_late_write

METHOD = "/likeness.test.Refuser/Upload"
CHUNK = b"\0" * 256 * 1024


async def _refuse_at_once(requests: object, context: grpc.aio.ServicerContext[object, object]) -> None:
    await abort(context, grpc.StatusCode.FAILED_PRECONDITION, "too_many_photos", "The subject is full.")


@pytest.fixture
async def refuser(server_process: None) -> object:
    server = grpc.aio.server()
    handler = grpc.stream_unary_rpc_method_handler(_refuse_at_once)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("likeness.test.Refuser", {"Upload": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield channel.stream_unary(METHOD)
    await channel.close(None)
    await server.stop(None)


async def test_a_refusal_mid_upload_is_the_servers_answer_or_recognisably_lost(refuser: object) -> None:
    """Writes as the gateway makes them (`call.write` per chunk) until the server's refusal stops them:
    every outcome is the server's own answer, or grpc.aio's INTERNAL that the helper recognises, never an
    INTERNAL it would take for a server fault."""
    outcomes: dict[str, int] = {}
    for _ in range(40):
        call = refuser()  # type: ignore[operator]
        try:
            while True:
                await call.write(CHUNK)
        except (asyncio.InvalidStateError, AioRpcError):
            pass  # the server answered: no more writes
        with pytest.raises(AioRpcError) as ended:
            await call
        if status_lost_to_a_late_write(ended.value):
            outcome = "lost"
        else:
            assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_code(ended.value) == "too_many_photos"
            outcome = "answered"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("answered", 0) > 0, outcomes


def test_only_grpcs_own_late_write_error_counts_as_lost() -> None:
    def error(code: grpc.StatusCode, debug: str) -> AioRpcError:
        return AioRpcError(code, Metadata(), Metadata((CODE_METADATA_KEY, "x")), "details", debug)

    late_write = 'Failed "execute_batch": (<grpc._cython.cygrpc.SendMessageOperation object at 0x1>,)'
    assert status_lost_to_a_late_write(error(grpc.StatusCode.INTERNAL, late_write))
    assert not status_lost_to_a_late_write(error(grpc.StatusCode.INTERNAL, "a bug in the servicer"))
    assert not status_lost_to_a_late_write(error(grpc.StatusCode.FAILED_PRECONDITION, late_write))
