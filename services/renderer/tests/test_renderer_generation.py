"""Style catalog and rendering on the tiny pipeline: LoRA from bytes, reproducible seeds, no leftovers."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pydantic
import pytest
import torch
from diffusers import StableDiffusionPipeline

from likeness_ml.base_model import load_pipeline
from likeness_ml.lora_adapters import has_lora
from likeness_ml.subject import SUBJECT_PHRASE
from renderer.generation import generate, make_scheduler, render, subject_lora
from renderer.lora_swap import is_merged
from renderer.styles import Style, get_style, load_styles

STEPS = 3  # the tiny model needs only a few sampler steps
REQUIRED_STYLES = {
    "linkedin",
    "corporate",
    "executive",
    "realtor",
    "resume",
    "creative",
    "startup_casual",
    "studio_portrait",
}


def _pixels(images: list[PIL.Image.Image]) -> list[np.ndarray[Any, np.dtype[np.uint8]]]:
    return [np.asarray(image) for image in images]


def _same(left: list[PIL.Image.Image], right: list[PIL.Image.Image]) -> bool:
    return len(left) == len(right) and all(
        np.array_equal(a, b) for a, b in zip(_pixels(left), _pixels(right), strict=True)
    )


# --- catalog ---------------------------------------------------------------------------------------


def test_catalog_has_the_curated_styles() -> None:
    styles = load_styles()
    assert len(styles) >= 8
    assert set(styles) >= REQUIRED_STYLES
    assert all(style_id == style.id for style_id, style in styles.items())


@pytest.mark.parametrize("style", list(load_styles().values()), ids=lambda style: style.id)
def test_every_style_prompts_for_the_subject(style: Style) -> None:
    assert "{subject}" in style.prompt_template
    prompt = style.prompt(SUBJECT_PHRASE)
    assert SUBJECT_PHRASE in prompt
    assert "{" not in prompt
    assert "}" not in prompt
    assert style.attire in prompt
    assert style.background in prompt
    # CLIP reads 77 tokens; roughly one per word or punctuation mark, so stay well below.
    for text in (prompt, style.negative_prompt):
        assert len(re.findall(r"\w+|[^\w\s]", text)) <= 65


@pytest.mark.parametrize("style", list(load_styles().values()), ids=lambda style: style.id)
def test_every_style_has_a_working_scheduler(style: Style, pipe: StableDiffusionPipeline) -> None:
    scheduler = make_scheduler(style.scheduler, pipe.scheduler.config)
    scheduler.set_timesteps(style.steps)
    assert len(scheduler.timesteps) >= style.steps


def test_styles_without_subject_or_with_unknown_fields_are_rejected() -> None:
    valid = get_style("linkedin").model_dump()
    with pytest.raises(pydantic.ValidationError, match="subject"):
        Style.model_validate({**valid, "prompt_template": "a headshot of a person"})
    with pytest.raises(pydantic.ValidationError, match="unknown fields"):
        Style.model_validate({**valid, "prompt_template": "{subject} in {city}"})
    with pytest.raises(pydantic.ValidationError):
        Style.model_validate({**valid, "free_prompt": "anything"})


def test_unknown_style_id_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="unknown style"):
        get_style("anime_waifu")


# --- rendering -------------------------------------------------------------------------------------


def test_renders_one_native_size_image_per_seed(pipe: StableDiffusionPipeline, lora: bytes) -> None:
    images = render(pipe, lora, get_style("linkedin"), [1, 2, 3], SUBJECT_PHRASE, num_inference_steps=STEPS)
    assert [image.size for image in images] == [(64, 64)] * 3
    assert not _same(images[:1], images[1:2])
    assert render(pipe, lora, get_style("linkedin"), [], SUBJECT_PHRASE) == []


def test_same_seed_gives_the_same_image(pipe: StableDiffusionPipeline, lora: bytes) -> None:
    style = get_style("corporate")
    batch = render(pipe, lora, style, [7, 8], SUBJECT_PHRASE, num_inference_steps=STEPS)
    again = render(pipe, lora, style, [7, 8], SUBJECT_PHRASE, num_inference_steps=STEPS)
    alone = render(pipe, lora, style, [8], SUBJECT_PHRASE, num_inference_steps=STEPS)
    assert _same(batch, again)
    # An image depends on its seed, not on its batch neighbours (up to float rounding: a different batch
    # size takes different CPU kernels).
    difference = np.abs(_pixels(batch)[1].astype(int) - _pixels(alone)[0].astype(int))
    assert difference.max() <= 2


def test_lora_changes_the_output(pipe: StableDiffusionPipeline, lora: bytes) -> None:
    style = get_style("executive")
    base = render(pipe, None, style, [3], SUBJECT_PHRASE, num_inference_steps=STEPS)
    with_lora = render(pipe, lora, style, [3], SUBJECT_PHRASE, num_inference_steps=STEPS)
    assert not _same(base, with_lora)


def test_after_a_lora_render_the_pipeline_is_bit_identical_to_an_untouched_one(
    pipe: StableDiffusionPipeline, model_dir: Path, lora: bytes
) -> None:
    style = get_style("studio_portrait")
    untouched = load_pipeline(model_dir, torch.device("cpu"))
    reference = render(untouched, None, style, [4, 5], SUBJECT_PHRASE, num_inference_steps=STEPS)
    scheduler = pipe.scheduler
    render(pipe, lora, style, [4, 5], SUBJECT_PHRASE, num_inference_steps=STEPS)
    assert not has_lora(pipe.unet)
    assert not has_lora(pipe.text_encoder)
    assert pipe.scheduler is scheduler
    assert _same(render(pipe, None, style, [4, 5], SUBJECT_PHRASE, num_inference_steps=STEPS), reference)


def test_next_person_gets_nothing_of_the_last(
    pipe: StableDiffusionPipeline, lora: bytes, make_lora: Callable[[int], bytes]
) -> None:
    style = get_style("realtor")
    other = make_lora(2)
    fresh = render(pipe, other, style, [6], SUBJECT_PHRASE, num_inference_steps=STEPS)
    render(pipe, lora, style, [6], SUBJECT_PHRASE, num_inference_steps=STEPS)
    assert _same(render(pipe, other, style, [6], SUBJECT_PHRASE, num_inference_steps=STEPS), fresh)


def test_one_lora_load_can_serve_several_styles(pipe: StableDiffusionPipeline, lora: bytes) -> None:
    styles = [get_style("linkedin"), get_style("startup_casual")]
    with subject_lora(pipe, lora):
        assert is_merged(pipe)
        together = [generate(pipe, style, [9], SUBJECT_PHRASE, num_inference_steps=STEPS) for style in styles]
    assert not is_merged(pipe)
    for style, images in zip(styles, together, strict=True):
        assert _same(images, render(pipe, lora, style, [9], SUBJECT_PHRASE, num_inference_steps=STEPS))


def test_pipeline_is_clean_after_a_failed_render(pipe: StableDiffusionPipeline, lora: bytes) -> None:
    with pytest.raises(ValueError, match="divisible by 8"):
        render(pipe, lora, get_style("resume"), [1], SUBJECT_PHRASE, num_inference_steps=STEPS, resolution=60)
    assert not has_lora(pipe.unet)
    with pytest.raises(ValueError, match="safetensors"):
        render(pipe, b"not a lora", get_style("resume"), [1], SUBJECT_PHRASE, num_inference_steps=STEPS)
    assert not has_lora(pipe.unet)


# --- privacy: nothing is written while rendering ---------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_WRITE_EVENTS = {
    "tempfile.mkstemp",
    "tempfile.mkdtemp",
    "os.rename",
    "os.replace",
    "shutil.copyfile",
    "os.truncate",
}
_writes: list[tuple[str, Any]] = []
_watching = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _watching:
        return
    if event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        ):
            _writes.append((event, path))
    elif event in _WRITE_EVENTS:
        _writes.append((event, args))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it only records while _watching


@contextmanager
def _no_disk_writes() -> Iterator[None]:
    global _watching
    _writes.clear()
    _watching = True
    try:
        yield
    finally:
        _watching = False
    assert _writes == []


def test_no_file_is_written_while_rendering(pipe: StableDiffusionPipeline, lora: bytes) -> None:
    with _no_disk_writes():
        images = render(pipe, lora, get_style("creative"), [1, 2], SUBJECT_PHRASE, num_inference_steps=STEPS)
    assert len(images) == 2


def test_audit_hook_catches_writes(tmp_path: Path) -> None:
    with pytest.raises(AssertionError), _no_disk_writes():
        (tmp_path / "leak.png").write_bytes(b"x")
