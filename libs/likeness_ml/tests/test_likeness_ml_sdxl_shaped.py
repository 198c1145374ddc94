"""The SDXL-shaped benchmark model is SDXL base 1.0's architecture, counted on the meta device (shapes only,
no memory, no arithmetic), so this runs in seconds."""

from __future__ import annotations

import torch

from likeness_ml.base_model import detect_family, native_resolution
from likeness_ml.sdxl_shaped import sdxl_shaped_pipeline


def _params(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def test_it_is_sdxl_base_1_0_in_the_dtype_asked_for() -> None:
    pipe = sdxl_shaped_pipeline(device=torch.device("meta"), dtype=torch.bfloat16)
    # stable-diffusion-xl-base-1.0's published UNet and VAE sizes.
    assert _params(pipe.unet) == 2_567_463_684
    assert _params(pipe.vae) == 83_653_863
    # OpenCLIP bigG's 32 layers of width 1280 (the offline vocabulary shrinks only the embedding table).
    assert pipe.text_encoder_2.config.num_hidden_layers == 32
    assert pipe.text_encoder_2.config.hidden_size == 1280
    assert pipe.text_encoder.config.hidden_size + pipe.text_encoder_2.config.hidden_size == 2048
    assert {p.dtype for p in pipe.unet.parameters()} == {torch.bfloat16}
    assert torch.get_default_dtype() == torch.float32  # the build leaves the process default alone
    assert native_resolution(pipe) == 1024
    assert detect_family(pipe) == "sdxl"  # so the trainer and renderer pick SDXL's preset and tuning
    assert not any(p.requires_grad for p in pipe.unet.parameters())
