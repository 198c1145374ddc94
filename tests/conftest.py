"""Cross-service tests run the real stack: NATS, SeaweedFS S3 and OpenBao, and all five services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from likeness_dev.infra import Infra
from likeness_dev.journey import GatewayClient
from likeness_dev.stack import DevStack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, infra: Infra) -> Iterator[DevStack]:
    project = tmp_path_factory.mktemp("project")
    started = DevStack.start(
        Path(project),
        infra=infra,
        progress=lambda line: print(f"[stack] {line}", flush=True),
        # The tiny model needs only a few sampler steps; training length comes from the tiny preset.
        # Two photos are enough to exercise a training here (production wants 4: the gateway's default).
        # The tests share the dev tenant and leave jobs queued or long (10,000 steps, cancelled): room above
        # the per-tenant quotas, which `tests/test_quotas_e2e.py` tries at their bounds on a stack of its own;
        # `tests/test_fair_scheduling_e2e.py` queues 200 renders for one tenant.
        extra_env={
            "LIKENESS_INFERENCE_STEPS": "4",
            "LIKENESS_MIN_PHOTOS_FOR_TRAINING": "2",
            "LIKENESS_QUOTA_CONCURRENT_TRAININGS": "100",
            "LIKENESS_QUOTA_CONCURRENT_RENDERS": "400",
            "LIKENESS_QUOTA_TRAINING_STEPS": "10000",
        },
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def gateway(stack: DevStack) -> Iterator[GatewayClient]:
    client = GatewayClient(stack.gateway_url, stack.mint_token())
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def gateway_module(stack: DevStack) -> Iterator[GatewayClient]:
    client = GatewayClient(stack.gateway_url, stack.mint_token())
    try:
        yield client
    finally:
        client.close()
