"""Rendering on the tiny SDXL pipeline with a subject LoRA merged from bytes, and the styles' per-family
tuning: SDXL renders the catalog, leaves the shared pipeline bit-identical, and refuses other families'
LoRAs before touching a weight."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from pydantic import ValidationError

from likeness_ml.base_model import load_pipeline
from likeness_ml.lora_adapters import pipe_has_lora
from likeness_ml.lora_format import parse_lora, serialize_lora, split_by_component
from likeness_ml.subject import SUBJECT_PHRASE
from likeness_ml.text_encoder_lora import (
    add_text_encoder_adapter,
    remove_text_encoder_lora,
    text_encoder_lora_state_dict,
)
from renderer.generation import render
from renderer.lora_swap import is_merged, merged_lora
from renderer.styles import FamilyTuning, Style, get_style, load_styles

STEPS = 3


def _pixels(images: list[PIL.Image.Image]) -> list[np.ndarray]:
    return [np.asarray(image) for image in images]


def _same(first: list[PIL.Image.Image], second: list[PIL.Image.Image]) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(_pixels(first), _pixels(second), strict=True))


def test_sdxl_renders_with_the_lora_and_leaves_the_pipeline_bit_identical(
    sdxl_pipe: StableDiffusionXLPipeline, sdxl_model_dir: Path, sdxl_lora: bytes
) -> None:
    style = get_style("linkedin").for_family("sdxl")
    untouched = load_pipeline(sdxl_model_dir, torch.device("cpu"))
    reference = render(untouched, None, style, [4, 5], SUBJECT_PHRASE, num_inference_steps=STEPS)
    with_lora = render(sdxl_pipe, sdxl_lora, style, [4, 5], SUBJECT_PHRASE, num_inference_steps=STEPS)
    assert [image.size for image in with_lora] == [(64, 64)] * 2
    assert not _same(with_lora, reference), "the LoRA changes the images"
    assert not is_merged(sdxl_pipe)
    assert not pipe_has_lora(sdxl_pipe)
    after = render(sdxl_pipe, None, style, [4, 5], SUBJECT_PHRASE, num_inference_steps=STEPS)
    assert _same(after, reference)


def test_an_sd_lora_is_refused_on_sdxl_before_any_weight_changes(
    sdxl_pipe: StableDiffusionXLPipeline, make_lora: Callable[[int], bytes]
) -> None:
    sd_lora = make_lora(3)
    before = {name: tensor.clone() for name, tensor in sdxl_pipe.unet.state_dict().items()}
    refused = pytest.raises(ValueError, match="trained on 'tiny', this pipeline is 'tiny_sdxl'")
    with refused, merged_lora(sdxl_pipe, sd_lora):
        pytest.fail("an SD LoRA was merged into SDXL")
    assert not is_merged(sdxl_pipe)
    assert all(torch.equal(sdxl_pipe.unet.state_dict()[name], tensor) for name, tensor in before.items())


def test_every_style_is_tuned_for_sdxl_and_untouched_on_sd15() -> None:
    for style in load_styles().values():
        tuned = style.for_family("sdxl")
        assert tuned.guidance_scale == 5.0
        assert tuned.steps == 28
        assert len(tuned.negative_prompt) < len(style.negative_prompt)
        assert (tuned.prompt_template, tuned.background, tuned.scheduler) == (
            style.prompt_template,
            style.background,
            style.scheduler,
        )
        assert style.for_family("sd15") == style


def test_a_style_own_tuning_wins_field_by_field_over_the_catalog() -> None:
    catalog_wide = FamilyTuning(steps=28, guidance_scale=5.0)
    own = FamilyTuning(guidance_scale=4.0)
    assert own.over(catalog_wide) == FamilyTuning(steps=28, guidance_scale=4.0)
    style = get_style("corporate").model_copy(update={"family_tuning": {"sdxl": own.over(catalog_wide)}})
    assert (style.for_family("sdxl").steps, style.for_family("sdxl").guidance_scale) == (28, 4.0)


def test_tuning_is_validated_like_the_style_itself() -> None:
    with pytest.raises(ValidationError):
        FamilyTuning(steps=0)
    with pytest.raises(ValidationError):
        Style.model_validate({**get_style("linkedin").model_dump(), "family_tuning": {"flux": {}}})


def _with_text_encoder_lora(pipe: StableDiffusionXLPipeline, unet_lora: bytes) -> bytes:
    """unet_lora plus random (non-zero) LoRAs of both SDXL text encoders, as the trainer would write."""
    state_dict, metadata = parse_lora(unet_lora)
    parts = split_by_component(state_dict)
    encoder_loras = {}
    for component in ("text_encoder", "text_encoder_2"):
        encoder = getattr(pipe, component)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(5)
            add_text_encoder_adapter(encoder, metadata.rank, metadata.alpha, "made_in_test", init=False)
        try:
            encoder_loras[component] = {
                key: value.detach().clone() * 0.3
                for key, value in text_encoder_lora_state_dict(encoder, "made_in_test").items()
            }
        finally:
            remove_text_encoder_lora(encoder)
    with_encoders = replace(metadata, text_encoders=tuple(encoder_loras))
    return serialize_lora(parts["unet"], with_encoders, encoder_loras)


def test_a_text_encoder_lora_is_merged_into_both_encoders_and_taken_out_again(
    sdxl_pipe: StableDiffusionXLPipeline, sdxl_lora: bytes
) -> None:
    style = get_style("corporate").for_family("sdxl")
    full = _with_text_encoder_lora(sdxl_pipe, sdxl_lora)
    encoders_before = [
        {name: tensor.clone() for name, tensor in getattr(sdxl_pipe, c).state_dict().items()}
        for c in ("text_encoder", "text_encoder_2")
    ]
    base = render(sdxl_pipe, None, style, [6], SUBJECT_PHRASE, num_inference_steps=STEPS)
    unet_only = render(sdxl_pipe, sdxl_lora, style, [6], SUBJECT_PHRASE, num_inference_steps=STEPS)
    with_encoders = render(sdxl_pipe, full, style, [6], SUBJECT_PHRASE, num_inference_steps=STEPS)
    assert not _same(with_encoders, unet_only), "the encoders' LoRA changes the conditioning"
    for component, before in zip(("text_encoder", "text_encoder_2"), encoders_before, strict=True):
        after = getattr(sdxl_pipe, component).state_dict()
        assert all(torch.equal(after[name], tensor) for name, tensor in before.items())
    assert _same(render(sdxl_pipe, None, style, [6], SUBJECT_PHRASE, num_inference_steps=STEPS), base)
