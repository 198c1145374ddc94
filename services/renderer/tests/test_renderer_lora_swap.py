"""The LoRA hot swap: merged into the resident UNet from bytes with its own alpha, and exactly undone."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline

from likeness_ml.lora_adapters import attach_lora, detach_lora
from likeness_ml.lora_format import LoraMetadata, parse_lora, serialize_lora
from likeness_ml.subject import SUBJECT_PHRASE
from renderer.generation import generate, render
from renderer.lora_swap import is_merged, merged_lora, read_lora
from renderer.styles import get_style

STEPS = 3


def _weights(pipe: StableDiffusionPipeline) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in pipe.unet.state_dict().items()}


def _unchanged(pipe: StableDiffusionPipeline, before: dict[str, torch.Tensor]) -> bool:
    after = pipe.unet.state_dict()
    return set(after) == set(before) and all(torch.equal(after[name], before[name]) for name in before)


def _with_metadata(lora: bytes, **changes: object) -> bytes:
    state_dict, metadata = parse_lora(lora)
    fields = {
        "rank": metadata.rank,
        "alpha": metadata.alpha,
        "base_family": metadata.base_family,
        "subject_phrase": metadata.subject_phrase,
    } | changes
    unprefixed = {key.removeprefix("unet."): value for key, value in state_dict.items()}
    return serialize_lora(unprefixed, LoraMetadata(**fields))  # type: ignore[arg-type]


def test_merged_lora_renders_like_the_peft_adapter(pipe: StableDiffusionPipeline, lora: bytes) -> None:
    """Merging computes what PEFT computes per step, (alpha / rank) * up @ down, so the images agree up to
    float rounding; with alpha != rank a wrong scale would show."""
    lora = _with_metadata(lora, alpha=16.0)  # scale 4: a strong effect, and a wrong scale would show
    style = get_style("linkedin")
    merged = render(pipe, lora, style, [11], SUBJECT_PHRASE, num_inference_steps=STEPS)
    base = render(pipe, None, style, [11], SUBJECT_PHRASE, num_inference_steps=STEPS)
    attach_lora(pipe, lora, "reference")
    try:
        adapter = generate(pipe, style, [11], SUBJECT_PHRASE, num_inference_steps=STEPS)
    finally:
        detach_lora(pipe)
    merged_pixels, adapter_pixels = np.asarray(merged[0], int), np.asarray(adapter[0], int)
    assert np.abs(merged_pixels - adapter_pixels).max() <= 2
    assert np.abs(merged_pixels - np.asarray(base[0], int)).max() > 8


def test_weights_are_restored_bit_for_bit_even_after_an_error(
    pipe: StableDiffusionPipeline, lora: bytes
) -> None:
    before = _weights(pipe)
    seen: list[bool] = []

    def fail_while_merged() -> None:
        with merged_lora(pipe, lora):
            seen.extend([is_merged(pipe), _unchanged(pipe, before)])
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_while_merged()
    assert seen == [True, False]
    assert not is_merged(pipe)
    assert _unchanged(pipe, before)


def test_merges_never_nest(pipe: StableDiffusionPipeline, lora: bytes) -> None:
    with merged_lora(pipe, lora):
        nested = merged_lora(pipe, lora)
        with pytest.raises(RuntimeError, match="already merged"):
            nested.__enter__()
    assert not is_merged(pipe)


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda lora: _with_metadata(lora, base_family="sd15"), "trained on 'sd15'"),
        (lambda lora: _with_metadata(lora, rank=8), "rank"),
        (lambda lora: b"not a lora", "safetensors"),
    ],
    ids=["other-base-model", "wrong-rank", "garbage"],
)
def test_unusable_loras_are_refused_before_any_weight_changes(
    pipe: StableDiffusionPipeline, lora: bytes, spoil: Callable[[bytes], bytes], message: str
) -> None:
    before = _weights(pipe)
    with pytest.raises(ValueError, match=message), merged_lora(pipe, spoil(lora)):
        pass
    assert _unchanged(pipe, before)
    assert not is_merged(pipe)


def test_a_lora_for_another_architecture_is_refused(pipe: StableDiffusionPipeline, lora: bytes) -> None:
    state_dict, metadata = parse_lora(lora)
    wider = {
        key.removeprefix("unet."): torch.cat([value, value], dim=1) if key.endswith("down.weight") else value
        for key, value in state_dict.items()
    }
    with (
        pytest.raises(ValueError, match="shapes do not match the UNet"),
        merged_lora(pipe, serialize_lora(wider, metadata)),
    ):
        pass
    assert not is_merged(pipe)


def test_read_lora_pairs_every_layer(lora: bytes) -> None:
    parsed = read_lora(lora)
    assert parsed.metadata.rank == 4
    assert parsed.layers
    for down, up in parsed.layers.values():
        assert down.shape[0] == up.shape[1] == 4
