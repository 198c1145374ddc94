"""The identity adapter of instant mode: IP-Adapter's *plus-face* variant, loaded into the resident base
pipeline once and attached only for the renders that use it.

Plus-face conditions the UNet on a CLIP vision encoder's penultimate hidden states of one face photo,
resampled by a perceiver ("plus" projection) into a few extra cross-attention tokens. It needs no face
recognition model (unlike the FaceID variants, whose embedding models are licensed for non-commercial use
only: those are refused here). The weights are provisioned and pinned like the base model: a directory

    image_encoder/config.json, image_encoder/model.safetensors   CLIPVisionModelWithProjection
    ip-adapter-plus-face.safetensors                              `image_proj.*` + `ip_adapter.*` keys
    likeness-manifest.json                                        pins the files, names the family

verified at worker start (`likeness_ml.pinned_weights`), then read with diffusers' own `load_ip_adapter`.

The photo's embedding lives in memory only, for one job: it is computed from the decrypted crop, used for
that job's images and dropped with it (never cached, stored or sent).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL.Image
import torch
from safetensors import safe_open
from transformers import CLIPImageProcessor

from likeness_ml.base_model import BasePipeline

#: The adapter's weight file and image encoder folder inside the pinned directory.
ADAPTER_WEIGHTS = "ip-adapter-plus-face.safetensors"
IMAGE_ENCODER_FOLDER = "image_encoder"
#: Key prefixes of the variants refused: FaceID's projections (and its LoRA) rely on insightface embeddings.
_FACEID_MARKERS = ("image_proj.perceiver_resampler.", "image_proj.norm.weight", "to_k_lora")
#: The plus ("Resampler") projection's learned queries: what marks the plus variant.
_PLUS_MARKER = "image_proj.latents"
_IP_IMAGE_PROJ = "ip_image_proj"


class AdapterUnusable(ValueError):
    """The directory is not an IP-Adapter plus-face for this base model."""


@dataclass
class IdentityAdapter:
    """The adapter's modules, kept beside the pipeline while no render uses them.

    ip_processors / plain_processors: the UNet's attention processors with and without the image
    cross-attention; projection: the resampler turning CLIP hidden states into image tokens."""

    ip_processors: dict[str, Any]
    plain_processors: dict[str, Any]
    projection: torch.nn.Module
    processor: CLIPImageProcessor
    tokens: int


@dataclass(frozen=True)
class FaceEmbeds:
    """One photo's CLIP hidden states (1, tokens, width) and those of a blank image, the unconditional
    half of classifier-free guidance. In memory only."""

    photo: torch.Tensor
    blank: torch.Tensor

    def for_pipeline(self, guided: bool) -> list[torch.Tensor]:
        """`ip_adapter_image_embeds` for one adapter: (blank, photo) stacked when guidance is on."""
        if guided:
            return [torch.stack([self.blank, self.photo])]
        return [self.photo.unsqueeze(0)]


def check_plus_face(adapter_dir: Path) -> int:
    """The number of image tokens of the plus-face weights in adapter_dir (AdapterUnusable otherwise)."""
    weights = adapter_dir / ADAPTER_WEIGHTS
    if not weights.is_file() or not (adapter_dir / IMAGE_ENCODER_FOLDER / "config.json").is_file():
        raise AdapterUnusable(
            f"{adapter_dir} is not an identity adapter directory (needs {ADAPTER_WEIGHTS} and "
            f"{IMAGE_ENCODER_FOLDER}/)"
        )
    with safe_open(str(weights), framework="pt", device="cpu") as handle:
        keys = list(handle.keys())
        if any(marker in key for key in keys for marker in _FACEID_MARKERS):
            raise AdapterUnusable(
                f"{weights} is an IP-Adapter FaceID variant (non-commercial face embeddings): refused"
            )
        if _PLUS_MARKER not in keys:
            raise AdapterUnusable(f"{weights} is not the plus variant (no {_PLUS_MARKER})")
        return int(handle.get_slice(_PLUS_MARKER).get_shape()[1])


def load_identity_adapter(pipe: BasePipeline, adapter_dir: Path) -> IdentityAdapter:
    """Reads the adapter into pipe's device and dtype, then detaches it: the pipeline renders exactly as
    before until `identity_attached`. The image encoder stays registered on the pipeline."""
    tokens = check_plus_face(adapter_dir)
    unet = pipe.unet
    plain = dict(unet.attn_processors)
    hid_dim_type = unet.config.encoder_hid_dim_type
    try:
        pipe.load_ip_adapter(
            str(adapter_dir),
            subfolder="",
            weight_name=ADAPTER_WEIGHTS,
            image_encoder_folder=IMAGE_ENCODER_FOLDER,
            local_files_only=True,
        )
    except (ValueError, RuntimeError, KeyError) as misfit:  # shapes of another base model, or missing layers
        _restore(pipe, plain, hid_dim_type)
        raise AdapterUnusable(f"{adapter_dir} does not fit this base model: {misfit}") from misfit
    encoder = pipe.image_encoder
    encoder.eval()
    encoder.requires_grad_(False)
    side = int(encoder.config.image_size)
    adapter = IdentityAdapter(
        ip_processors=dict(unet.attn_processors),
        plain_processors=plain,
        projection=unet.encoder_hid_proj,
        processor=CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}),
        tokens=tokens,
    )
    _restore(pipe, plain, hid_dim_type)
    return adapter


def _restore(pipe: BasePipeline, plain: dict[str, Any], hid_dim_type: object) -> None:
    # The projection has attention layers of its own: it goes first, then the processors are counted.
    pipe.unet.encoder_hid_proj = None
    # set_attn_processor consumes the dict it is given: always hand it a copy.
    pipe.unet.set_attn_processor(dict(plain))
    # diffusers records the projection kind on the (frozen) config the same way when it loads one.
    pipe.unet.config.encoder_hid_dim_type = hid_dim_type


@contextlib.contextmanager
def identity_attached(pipe: BasePipeline, adapter: IdentityAdapter, scale: float) -> Iterator[None]:
    """The adapter active in pipe at scale for the block, always detached after (a LoRA merged into the
    same pipeline stays as it is: the two combine)."""
    hid_dim_type = pipe.unet.config.encoder_hid_dim_type
    pipe.unet.encoder_hid_proj = adapter.projection
    pipe.unet.set_attn_processor(dict(adapter.ip_processors))
    pipe.unet.config.encoder_hid_dim_type = _IP_IMAGE_PROJ
    try:
        pipe.set_ip_adapter_scale(scale)
        yield
    finally:
        _restore(pipe, adapter.plain_processors, hid_dim_type)


def face_embeds(pipe: BasePipeline, adapter: IdentityAdapter, photo: PIL.Image.Image) -> FaceEmbeds:
    """The photo's plus-face embedding (penultimate CLIP hidden states), computed in memory."""
    pixels = adapter.processor(images=photo.convert("RGB"), return_tensors="pt").pixel_values
    with torch.inference_mode():
        # The plus projection reads hidden states, not the pooled projection.
        photo_states, blank_states = pipe.encode_image(pixels, pipe.device, 1, output_hidden_states=True)
    return FaceEmbeds(photo=photo_states, blank=blank_states)
