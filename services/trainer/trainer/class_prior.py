"""Prior preservation's class images: generated once per base model and worker, then reused by every job.

DreamBooth's prior loss trains each step on images of the class ("a photo of person") next to the
subject's photos, so the LoRA binds the identity to the identifier and leaves the class alone. The class
images come from the base model itself, with no LoRA attached and a fixed seed: they depict nobody in
particular and are the same for every subject, so they are not personal data and are kept unencrypted,
in this process's memory, as what training consumes (VAE posteriors and the class prompt's embedding).
Either family works: the images come from the resident pipeline's own class (SD or SDXL), and for SDXL
they carry the class prompt's pooled embedding and their own time ids (generated uncropped at the
training resolution).
"""

from __future__ import annotations

import threading
from dataclasses import replace

import torch

from likeness_ml.base_model import BasePipeline, is_sdxl, native_resolution
from likeness_ml.conditioning import encode_conditioning, sdxl_time_ids
from likeness_ml.lora_adapters import has_lora
from trainer.lora_training import ClassPrior, encode_posteriors
from trainer.presets import TrainConfig

_SAMPLE_BATCH = 4  # the reference script's --sample_batch_size
_CLASS_SEED = 0

_Key = tuple[int, str, int, int, int]


class ClassPriors:
    """The class priors of one worker's resident pipeline, by prompt, count, resolution and sampler steps."""

    def __init__(self) -> None:
        self._cache: dict[_Key, ClassPrior] = {}
        self._lock = threading.Lock()
        self.generated = 0  # class images generated so far (the cache makes this happen once)

    def get(self, pipe: BasePipeline, config: TrainConfig, inference_steps: int) -> ClassPrior:
        resolution = config.resolution or native_resolution(pipe)
        key = (id(pipe), config.class_prompt, config.num_class_images, resolution, inference_steps)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._generate(pipe, config, resolution, inference_steps)
            return self._cache[key]

    def _generate(
        self, pipe: BasePipeline, config: TrainConfig, resolution: int, inference_steps: int
    ) -> ClassPrior:
        if has_lora(pipe.unet):
            raise RuntimeError("class images must come from the base model alone")
        generator = torch.Generator(device="cpu").manual_seed(_CLASS_SEED)
        batches = []
        for start in range(0, config.num_class_images, _SAMPLE_BATCH):
            count = min(_SAMPLE_BATCH, config.num_class_images - start)
            images = pipe(
                config.class_prompt,
                num_images_per_prompt=count,
                num_inference_steps=inference_steps,
                height=resolution,
                width=resolution,
                generator=generator,
                output_type="pt",
            ).images
            batches.append(images.float().cpu() * 2.0 - 1.0)  # [0, 1] -> the VAE's [-1, 1]
            self.generated += count
        pool = encode_posteriors(pipe, torch.cat(batches))
        if is_sdxl(pipe):
            pool = replace(pool, time_ids=generated_time_ids(len(pool), resolution))
        conditioning = encode_conditioning(pipe, config.class_prompt)
        return ClassPrior(pool=pool, prompt_embeds=conditioning.embeds, pooled_embeds=conditioning.pooled)


def generated_time_ids(count: int, resolution: int) -> torch.Tensor:
    """SDXL time ids of images generated at resolution²: uncropped, original size = target size."""
    size = (resolution, resolution)
    return sdxl_time_ids(size, (0, 0), size).expand(count, -1).clone()
