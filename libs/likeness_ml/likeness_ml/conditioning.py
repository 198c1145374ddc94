"""What a UNet is conditioned on, per base family: the text embeddings and, for SDXL, the extra inputs.

SD 1.x/2.x condition on one text encoder's last hidden state. SDXL conditions on both encoders' penultimate
hidden states concatenated (CLIP ViT-L's 768 + OpenCLIP bigG's 1280 = 2048 wide), plus ``added_cond_kwargs``:
``text_embeds``, the second encoder's projected (pooled) output, and ``time_ids``, six numbers saying how
the training image was made: its original (height, width), the top-left (y, x) of the crop taken from it
after resizing, and the target (height, width). Training uses the pipeline's own ``encode_prompt`` for
SDXL, so what a LoRA learns against is exactly what the renderer later conditions on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from likeness_ml.base_model import BasePipeline, is_sdxl


@dataclass(frozen=True)
class PromptConditioning:
    """One prompt's conditioning, batch of one, on the CPU-or-device the text encoders live on."""

    embeds: torch.Tensor  # (1, tokens, width)
    pooled: torch.Tensor | None = None  # (1, pooled width): SDXL only

    def to(self, device: torch.device) -> PromptConditioning:
        pooled = self.pooled.to(device) if self.pooled is not None else None
        return PromptConditioning(self.embeds.to(device), pooled)


def encode_conditioning(pipe: BasePipeline, prompt: str, *, trainable: bool = False) -> PromptConditioning:
    """The prompt's text conditioning as the family's UNet takes it (no classifier-free guidance).

    trainable: keep the autograd graph (text-encoder LoRA training re-encodes the prompt every step).
    """
    with torch.set_grad_enabled(trainable):
        return _encode(pipe, prompt)


def _encode(pipe: BasePipeline, prompt: str) -> PromptConditioning:
    if is_sdxl(pipe):
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=prompt,
            device=pipe.text_encoder_2.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
        )
        return PromptConditioning(embeds, pooled)
    tokens = pipe.tokenizer(
        prompt,
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    hidden: torch.Tensor = pipe.text_encoder(tokens.input_ids.to(pipe.text_encoder.device))[0]
    return PromptConditioning(hidden)


def sdxl_time_ids(
    original_size: tuple[int, int], crop_top_left: tuple[int, int], target_size: tuple[int, int]
) -> torch.Tensor:
    """SDXL's micro-conditioning for one image, shape (6,), fp32: (height, width) pairs and crop (y, x)."""
    return torch.tensor([*original_size, *crop_top_left, *target_size], dtype=torch.float32)


def center_crop_top_left(original_size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """Where a center crop of resolution² starts once the short side is resized to resolution: what
    ``ImageOps.fit`` and the reference script's resize + center crop take from a (height, width) image."""
    height, width = original_size
    scale = resolution / min(height, width)
    return (
        max(0, round((height * scale - resolution) / 2)),
        max(0, round((width * scale - resolution) / 2)),
    )
