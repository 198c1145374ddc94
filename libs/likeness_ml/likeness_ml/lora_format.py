"""The subject LoRA's wire format: safetensors bytes in diffusers' key layout, plus our metadata.

One module owns the format so the trainer (writer) and renderer (reader) cannot drift apart. The bytes
are exactly what ``StableDiffusionLoraLoaderMixin.save_lora_weights`` would write (keys prefixed
``unet.``, diffusers ``lora_adapter_metadata`` header), but they are produced and consumed in memory only:
a subject LoRA encodes a person's face and must never touch disk unencrypted.

A LoRA may also adapt the text encoders (optional, off by default): their tensors are prefixed with the
pipeline component they belong to (``text_encoder.``, SDXL's ``text_encoder_2.``), as diffusers writes
them, and the metadata names those components; a UNet-only LoRA's bytes do not mention them at all.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import safetensors.torch
import torch
from diffusers import StableDiffusionPipeline

LORA_FORMAT = "likeness-lora/1"
LORA_TARGET_MODULES: tuple[str, ...] = ("to_k", "to_q", "to_v", "to_out.0")
#: The CLIP text encoders' attention projections (diffusers' DreamBooth scripts adapt the same ones).
TEXT_ENCODER_TARGET_MODULES: tuple[str, ...] = ("k_proj", "out_proj", "q_proj", "v_proj")
#: Pipeline components whose text-encoder LoRA a LoRA may carry (SD: the first; SDXL: both).
TEXT_ENCODER_COMPONENTS: tuple[str, ...] = ("text_encoder", "text_encoder_2")

# The pipeline component whose weights the keys belong to, and diffusers' header key for the PEFT config.
_UNET_PREFIX = StableDiffusionPipeline.unet_name
_DIFFUSERS_METADATA_KEY = "lora_adapter_metadata"
_HEADER_LENGTH = struct.Struct("<Q")


@dataclass(frozen=True)
class LoraMetadata:
    rank: int
    alpha: float
    base_family: str
    subject_phrase: str
    target_modules: tuple[str, ...] = LORA_TARGET_MODULES
    #: Text encoders adapted too (same rank and alpha, TEXT_ENCODER_TARGET_MODULES); empty: UNet only.
    text_encoders: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Order carries no meaning; sorted makes equal metadata compare (and serialize) equal.
        object.__setattr__(self, "target_modules", tuple(sorted(self.target_modules)))
        object.__setattr__(self, "text_encoders", tuple(sorted(self.text_encoders)))
        if self.rank < 1 or not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"invalid LoRA rank/alpha: {self.rank}/{self.alpha}")
        if unknown := set(self.text_encoders) - set(TEXT_ENCODER_COMPONENTS):
            raise ValueError(f"unknown text encoder component(s) {sorted(unknown)}")

    @property
    def components(self) -> tuple[str, ...]:
        """Every pipeline component the LoRA adapts, the UNet first."""
        return (_UNET_PREFIX, *self.text_encoders)

    @property
    def scale(self) -> float:
        """PEFT's LoRA multiplier: delta W = (alpha / rank) * B @ A."""
        return self.alpha / self.rank


def serialize_lora(
    unet_lora_state_dict: Mapping[str, torch.Tensor],
    metadata: LoraMetadata,
    text_encoder_state_dicts: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> bytes:
    """safetensors bytes of a UNet LoRA given in diffusers key format (``...to_q.lora.down.weight``), plus
    the text encoders' LoRAs by component name when the metadata says it adapts them."""
    text_encoder_state_dicts = text_encoder_state_dicts or {}
    if not unet_lora_state_dict or not all(text_encoder_state_dicts.values()):
        raise ValueError("empty LoRA state dict")
    if set(text_encoder_state_dicts) != set(metadata.text_encoders):
        raise ValueError("the text encoders' LoRAs differ from those the metadata names")
    parts = {_UNET_PREFIX: unet_lora_state_dict, **text_encoder_state_dicts}
    tensors = {
        f"{component}.{key}": tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()
        for component, state_dict in parts.items()
        for key, tensor in state_dict.items()
    }
    return _with_sorted_metadata(safetensors.torch.save(tensors, metadata=_header(metadata)))


def parse_lora(data: bytes) -> tuple[dict[str, torch.Tensor], LoraMetadata]:
    """The state dict (keys prefixed with their component, ``unet.`` first; CPU fp32) and metadata."""
    metadata = read_lora_metadata(data)
    state_dict = safetensors.torch.load(data)
    prefixes = tuple(f"{component}." for component in metadata.components)
    if not any(key.startswith(f"{_UNET_PREFIX}.") for key in state_dict) or not all(
        key.startswith(prefixes) and "lora" in key for key in state_dict
    ):
        raise ValueError("not a UNet LoRA state dict")
    for component in metadata.text_encoders:
        if not any(key.startswith(f"{component}.") for key in state_dict):
            raise ValueError(f"the LoRA names {component} but carries none of its tensors")
    return state_dict, metadata


def split_by_component(state_dict: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """A parsed state dict as component -> its keys without the component prefix."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        component, _, name = key.partition(".")
        parts.setdefault(component, {})[name] = tensor
    return parts


def read_lora_metadata(data: bytes) -> LoraMetadata:
    """Only the metadata (reads the safetensors JSON header, not the tensors)."""
    header = _read_safetensors_header(data)
    try:
        if header["likeness.format"] != LORA_FORMAT:
            raise ValueError(f"unsupported LoRA format {header['likeness.format']!r}")
        return LoraMetadata(
            rank=int(header["likeness.rank"]),
            alpha=float(header["likeness.alpha"]),
            base_family=header["likeness.base_family"],
            subject_phrase=header["likeness.subject_phrase"],
            target_modules=tuple(json.loads(header["likeness.target_modules"])),
            text_encoders=tuple(json.loads(header.get("likeness.text_encoders", "[]"))),
        )
    except KeyError as missing:
        raise ValueError(f"not a Likeness LoRA (missing {missing})") from None


def diffusers_adapter_metadata(metadata: LoraMetadata, component: str = _UNET_PREFIX) -> dict[str, object]:
    """diffusers' LoRA adapter metadata: LoraConfig kwargs prefixed like the tensors (``unet.r``, ...).

    Passed as ``metadata=`` to diffusers' loaders it fixes the adapter's rank and alpha exactly, instead of
    diffusers inferring them from tensor shapes (which assumes alpha == rank).
    """
    targets = metadata.target_modules if component == _UNET_PREFIX else TEXT_ENCODER_TARGET_MODULES
    return {
        f"{component}.r": metadata.rank,
        f"{component}.lora_alpha": metadata.alpha,
        f"{component}.target_modules": list(targets),
        f"{component}.init_lora_weights": "gaussian",
    }


def _header(metadata: LoraMetadata) -> dict[str, str]:
    adapter_metadata: dict[str, object] = {}
    for component in metadata.components:
        adapter_metadata |= diffusers_adapter_metadata(metadata, component)
    header = {
        "format": "pt",
        # Where diffusers' save_lora_weights puts the same information, so diffusers tooling reading these
        # bytes gets rank and alpha right too.
        _DIFFUSERS_METADATA_KEY: json.dumps(adapter_metadata, indent=2, sort_keys=True),
        "likeness.format": LORA_FORMAT,
        "likeness.rank": str(metadata.rank),
        "likeness.alpha": repr(float(metadata.alpha)),
        "likeness.base_family": metadata.base_family,
        "likeness.subject_phrase": metadata.subject_phrase,
        "likeness.target_modules": json.dumps(metadata.target_modules),
    }
    if metadata.text_encoders:  # absent from UNet-only LoRAs, whose bytes stay what they always were
        header["likeness.text_encoders"] = json.dumps(metadata.text_encoders)
    return header


def _with_sorted_metadata(data: bytes) -> bytes:
    """The same safetensors payload with its metadata map in sorted key order.

    safetensors writes ``__metadata__`` from a Rust HashMap, whose order is random per call, so identical
    LoRAs would serialize to different bytes. Tensor offsets are relative to the end of the header, so the
    header can be rewritten freely; the tensor entries keep safetensors' own order.
    """
    (length,) = _HEADER_LENGTH.unpack_from(data)
    start = _HEADER_LENGTH.size
    header = json.loads(data[start : start + length])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    tensors = {key: value for key, value in header.items() if key != "__metadata__"}
    text = json.dumps({"__metadata__": header["__metadata__"], **tensors}, separators=(",", ":"))
    encoded = text.encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # safetensors pads the header to 8-byte alignment with spaces
    return _HEADER_LENGTH.pack(len(encoded)) + encoded + data[start + length :]


def _read_safetensors_header(data: bytes) -> dict[str, str]:
    # safetensors layout: u64 little-endian header length, then that many bytes of JSON; the string map
    # under "__metadata__" is what save(..., metadata=) wrote.
    if len(data) < _HEADER_LENGTH.size:
        raise ValueError("not a safetensors payload")
    (length,) = _HEADER_LENGTH.unpack_from(data)
    if length > len(data) - _HEADER_LENGTH.size:
        raise ValueError("not a safetensors payload")
    try:
        header = json.loads(data[_HEADER_LENGTH.size : _HEADER_LENGTH.size + length])
    except ValueError:
        raise ValueError("not a safetensors payload") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        raise ValueError("not a Likeness LoRA (no metadata)")
    return {str(key): str(value) for key, value in metadata.items()}
