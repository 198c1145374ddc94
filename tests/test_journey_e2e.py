"""The whole journey through the gateway against the real servers, then a scan of what they stored.

The checks live in `likeness_dev.journey_checks`, shared with the SDXL journey (`test_sdxl_journey_e2e.py`).
"""

from __future__ import annotations

import pytest

from likeness_dev.journey import GatewayClient, JourneyResult, run_journey
from likeness_dev.journey_checks import check_erased, check_headshots_came_out, check_nothing_in_clear
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack

pytestmark = pytest.mark.slow

STYLES = ("linkedin", "studio_portrait")
IMAGES_PER_STYLE = 4


@pytest.fixture(scope="module")
def photos() -> list[tuple[str, bytes]]:
    return sample_photos(4)


@pytest.fixture(scope="module")
def journey(stack: DevStack, photos: list[tuple[str, bytes]]) -> JourneyResult:
    client = GatewayClient(stack.gateway_url, stack.mint_token())
    try:
        return run_journey(
            client, photos, styles=STYLES, images_per_style=IMAGES_PER_STYLE, say=print, timeout=300
        )
    finally:
        client.close()


def test_photos_are_accepted_and_headshots_come_out(journey: JourneyResult) -> None:
    check_headshots_came_out(journey, STYLES, IMAGES_PER_STYLE)


def test_erasure_destroys_the_key_then_everything_else(journey: JourneyResult) -> None:
    check_erased(journey)


def test_nothing_plaintext_in_s3_or_nats_data(
    stack: DevStack, journey: JourneyResult, photos: list[tuple[str, bytes]]
) -> None:
    check_nothing_in_clear(stack, journey, photos)
