"""The whole journey on the tiny SDXL model: photos → training → render → download → erase, through a dev
stack started with `base_family="sdxl"` (what `LIKENESS_BASE_FAMILY=sdxl likeness dev up` runs), with the
same checks as the SD 1.5 journey (`likeness_dev.journey_checks`), the leak scan included.

The stack has servers of its own: sharing the session's NATS would let the SD 1.5 stack's workers take
these jobs from the same work queues.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from likeness_dev.journey import GatewayClient, JourneyResult, run_journey
from likeness_dev.journey_checks import check_erased, check_headshots_came_out, check_nothing_in_clear
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack

pytestmark = pytest.mark.slow

STYLES = ("linkedin", "executive")
IMAGES_PER_STYLE = 2


@pytest.fixture(scope="module")
def sdxl_stack(tmp_path_factory: pytest.TempPathFactory, server_process: None) -> Iterator[DevStack]:
    started = DevStack.start(
        Path(tmp_path_factory.mktemp("sdxl-project")),
        base_family="sdxl",
        progress=lambda line: print(f"[sdxl stack] {line}", flush=True),
        extra_env={"LIKENESS_INFERENCE_STEPS": "4", "LIKENESS_MIN_PHOTOS_FOR_TRAINING": "2"},
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def photos() -> list[tuple[str, bytes]]:
    return sample_photos(3)


@pytest.fixture(scope="module")
def journey(sdxl_stack: DevStack, photos: list[tuple[str, bytes]]) -> JourneyResult:
    client = GatewayClient(sdxl_stack.gateway_url, sdxl_stack.mint_token())
    try:
        return run_journey(
            client, photos, styles=STYLES, images_per_style=IMAGES_PER_STYLE, say=print, timeout=300
        )
    finally:
        client.close()


def test_the_stack_runs_the_tiny_sdxl_model(sdxl_stack: DevStack) -> None:
    assert sdxl_stack.base_model is not None
    index = json.loads((Path(sdxl_stack.base_model) / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]


def test_photos_are_accepted_and_headshots_come_out(journey: JourneyResult) -> None:
    check_headshots_came_out(journey, STYLES, IMAGES_PER_STYLE)


def test_erasure_destroys_the_key_then_everything_else(journey: JourneyResult) -> None:
    check_erased(journey)


def test_nothing_plaintext_in_s3_or_nats_data(
    sdxl_stack: DevStack, journey: JourneyResult, photos: list[tuple[str, bytes]]
) -> None:
    check_nothing_in_clear(sdxl_stack, journey, photos)
