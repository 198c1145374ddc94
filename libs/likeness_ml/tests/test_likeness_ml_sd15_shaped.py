"""The SD 1.5-shaped benchmark model: SD 1.5 itself at full width, and a faithful scale model narrowed.

Counted on the meta device (shapes only, no memory, no arithmetic), so these run in seconds.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

from likeness_ml.sd15_shaped import sd15_shaped_pipeline, unet_config, vae_config


def _params(module: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _models(divisor: int, resolution: int) -> tuple[UNet2DConditionModel, AutoencoderKL]:
    with torch.device("meta"):
        return (
            UNet2DConditionModel(**unet_config(divisor, resolution)),
            AutoencoderKL(**vae_config(divisor, resolution)),
        )


def _flops(divisor: int, resolution: int) -> tuple[int, int]:
    """FLOPs of one UNet forward and one VAE encode of a single image."""
    unet, vae = _models(divisor, resolution)
    side = resolution // 8
    with torch.device("meta"):
        latents = torch.randn(1, 4, side, side)
        context = torch.randn(1, 77, unet.config.cross_attention_dim)
        image = torch.randn(1, 3, resolution, resolution)
        with FlopCounterMode(display=False) as unet_count:
            unet(latents, torch.tensor([500]), encoder_hidden_states=context)
        with FlopCounterMode(display=False) as vae_count:
            vae.encode(image)
    return unet_count.get_total_flops(), vae_count.get_total_flops()


def test_full_width_is_stable_diffusion_1_5() -> None:
    unet, vae = _models(1, 512)
    assert _params(unet) == 859_520_964
    assert _params(vae) == 83_653_863
    assert unet.config.block_out_channels == (320, 640, 1280, 1280)
    assert unet.config.cross_attention_dim == 768


def test_channels_over_4_at_256_px_is_sd15_at_512_px_with_every_flop_over_64() -> None:
    full_unet, full_vae = _flops(1, 512)
    small_unet, small_vae = _flops(4, 256)
    assert full_unet / small_unet == pytest.approx(64, rel=0.05)
    assert full_vae / small_vae == pytest.approx(64, rel=0.05)
    # What decides the naive loop's cost: the VAE encode against the UNet, as in SD 1.5.
    assert small_vae / small_unet == pytest.approx(full_vae / full_unet, rel=0.05)


def test_narrowing_keeps_the_block_structure_and_head_width() -> None:
    narrow, full = unet_config(4, 256), unet_config(1)
    for key in ("down_block_types", "up_block_types", "layers_per_block"):
        assert narrow[key] == full[key]
    assert narrow["block_out_channels"] == (80, 160, 320, 320)
    head_width = [c // narrow["attention_head_dim"] for c in narrow["block_out_channels"]]
    assert head_width == [c // full["attention_head_dim"] for c in full["block_out_channels"]]
    with pytest.raises(ValueError, match="divide"):
        unet_config(3)


def test_the_pipeline_runs_and_is_frozen() -> None:
    pipe = sd15_shaped_pipeline(width_divisor=4, resolution=64)
    assert not any(parameter.requires_grad for parameter in pipe.unet.parameters())
    with torch.no_grad():
        out = pipe.unet(
            torch.randn(1, 4, 8, 8), torch.tensor([10]), encoder_hidden_states=torch.randn(1, 77, 192)
        ).sample
    assert out.shape == (1, 4, 8, 8)
