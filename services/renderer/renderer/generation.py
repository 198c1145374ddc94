"""Rendering one person's headshots: base pipeline + their LoRA (from bytes) + a catalog style.

The pipeline is resident and shared by every job, so rendering leaves it exactly as it found it: the LoRA
is always unmerged (original weights restored) and the scheduler restored in a ``finally``. The next
person's images carry nothing of the last (tests check bit-identical outputs against a pipeline that never
saw a LoRA). A pipeline serves one job at a time: none of this is safe to call concurrently on the same
pipeline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import PIL.Image
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.configuration_utils import FrozenDict
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from likeness_ml.base_model import BasePipeline, native_resolution
from likeness_ml.identity_adapter import FaceEmbeds
from likeness_ml.lora_adapters import detach_lora, pipe_has_lora
from renderer.lora_swap import merged_lora
from renderer.styles import SchedulerName, Style

_SCHEDULERS: dict[SchedulerName, Callable[[FrozenDict], SchedulerMixin]] = {
    "dpmpp_2m": lambda config: DPMSolverMultistepScheduler.from_config(
        config, algorithm_type="dpmsolver++", solver_order=2
    ),
    "dpmpp_2m_karras": lambda config: DPMSolverMultistepScheduler.from_config(
        config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
    ),
    "euler_a": lambda config: EulerAncestralDiscreteScheduler.from_config(config),
    "euler": lambda config: EulerDiscreteScheduler.from_config(config),
    "ddim": lambda config: DDIMScheduler.from_config(config),
    "unipc": lambda config: UniPCMultistepScheduler.from_config(config),
}


def _identity_arguments(identity: FaceEmbeds | None, guidance_scale: float) -> dict[str, object]:
    if identity is None:
        return {}
    # diffusers guides (and then expects the blank image's half) only above a scale of 1.
    return {"ip_adapter_image_embeds": identity.for_pipeline(guided=guidance_scale > 1)}


def make_scheduler(name: SchedulerName, base_config: FrozenDict) -> SchedulerMixin:
    """A fresh sampler of the named kind on the base model's noise schedule (betas, prediction type)."""
    return _SCHEDULERS[name](base_config)


def render(
    pipe: BasePipeline,
    lora_safetensors: bytes | None,
    style: Style,
    seeds: Sequence[int],
    subject_phrase: str,
    num_inference_steps: int | None = None,
    resolution: int | None = None,
) -> list[PIL.Image.Image]:
    """One image per seed, in seed order: attach the LoRA, generate, always detach.

    lora_safetensors: the subject LoRA as produced by the trainer (None renders the bare base model).
    num_inference_steps: overrides the style's step count (tests and the tiny model need only a few).
    resolution: image side in pixels; default the base model's native resolution.
    To render several styles for one person with a single LoRA load, use ``subject_lora`` + ``generate``.
    """
    with subject_lora(pipe, lora_safetensors):
        return generate(pipe, style, seeds, subject_phrase, num_inference_steps, resolution)


@contextlib.contextmanager
def subject_lora(pipe: BasePipeline, lora_safetensors: bytes | None) -> Iterator[None]:
    """The subject's LoRA merged into pipe for the duration of the block, and taken out whatever happens."""
    if pipe_has_lora(pipe):
        detach_lora(pipe)  # never render on top of a leftover PEFT adapter
    if lora_safetensors is None:
        yield
        return
    with merged_lora(pipe, lora_safetensors):
        yield


def generate(
    pipe: BasePipeline,
    style: Style,
    seeds: Sequence[int],
    subject_phrase: str,
    num_inference_steps: int | None = None,
    resolution: int | None = None,
    identity: FaceEmbeds | None = None,
) -> list[PIL.Image.Image]:
    """One image per seed with whatever adapter pipe carries, from a single batched pipeline call.

    identity: instant mode's photo embedding, for a pipe with the identity adapter attached
    (`likeness_ml.identity_adapter.identity_attached`)."""
    if not seeds:
        return []
    count = len(seeds)
    base_scheduler = pipe.scheduler
    pipe.scheduler = make_scheduler(style.scheduler, base_scheduler.config)
    try:
        # One generator per image, on the CPU: an image depends only on its own seed (not on its batch
        # neighbours, up to float rounding), and a seed draws the same starting noise on any device.
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        size = resolution or native_resolution(pipe)
        with torch.inference_mode():
            # One prompt, encoded once for the whole batch (not once per image).
            output = pipe(
                prompt=style.prompt(subject_phrase),
                negative_prompt=style.negative_prompt,
                num_images_per_prompt=count,
                num_inference_steps=num_inference_steps or style.steps,
                guidance_scale=style.guidance_scale,
                generator=generators,
                height=size,
                width=size,
                output_type="pil",
                **_identity_arguments(identity, style.guidance_scale),
            )
        images: list[PIL.Image.Image] = list(output.images)
        return images
    finally:
        pipe.scheduler = base_scheduler
