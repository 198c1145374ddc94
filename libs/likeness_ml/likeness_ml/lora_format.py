"""The subject LoRA's wire format: safetensors bytes in diffusers' key layout, plus our metadata.

One module owns the format so the trainer (writer) and renderer (reader) cannot drift apart. The bytes
are exactly what ``StableDiffusionLoraLoaderMixin.save_lora_weights`` would write (keys prefixed
``unet.``, diffusers ``lora_adapter_metadata`` header), but they are produced and consumed in memory only:
a subject LoRA encodes a person's face and must never touch disk unencrypted.
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

    def __post_init__(self) -> None:
        # Order carries no meaning; sorted makes equal metadata compare (and serialize) equal.
        object.__setattr__(self, "target_modules", tuple(sorted(self.target_modules)))
        if self.rank < 1 or not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ValueError(f"invalid LoRA rank/alpha: {self.rank}/{self.alpha}")

    @property
    def scale(self) -> float:
        """PEFT's LoRA multiplier: delta W = (alpha / rank) * B @ A."""
        return self.alpha / self.rank


def serialize_lora(unet_lora_state_dict: Mapping[str, torch.Tensor], metadata: LoraMetadata) -> bytes:
    """safetensors bytes of a UNet LoRA given in diffusers key format (``...to_q.lora.down.weight``)."""
    if not unet_lora_state_dict:
        raise ValueError("empty LoRA state dict")
    tensors = {
        f"{_UNET_PREFIX}.{key}": tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()
        for key, tensor in unet_lora_state_dict.items()
    }
    return _with_sorted_metadata(safetensors.torch.save(tensors, metadata=_header(metadata)))


def parse_lora(data: bytes) -> tuple[dict[str, torch.Tensor], LoraMetadata]:
    """The state dict (keys prefixed ``unet.``, CPU fp32) and metadata of serialized LoRA bytes."""
    metadata = read_lora_metadata(data)
    state_dict = safetensors.torch.load(data)
    if not state_dict or not all(key.startswith(f"{_UNET_PREFIX}.") and "lora" in key for key in state_dict):
        raise ValueError("not a UNet LoRA state dict")
    return state_dict, metadata


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
        )
    except KeyError as missing:
        raise ValueError(f"not a Likeness LoRA (missing {missing})") from None


def diffusers_adapter_metadata(metadata: LoraMetadata) -> dict[str, object]:
    """diffusers' LoRA adapter metadata: LoraConfig kwargs prefixed like the tensors (``unet.r``, ...).

    Passed as ``metadata=`` to diffusers' loaders it fixes the adapter's rank and alpha exactly, instead of
    diffusers inferring them from tensor shapes (which assumes alpha == rank).
    """
    return {
        f"{_UNET_PREFIX}.r": metadata.rank,
        f"{_UNET_PREFIX}.lora_alpha": metadata.alpha,
        f"{_UNET_PREFIX}.target_modules": list(metadata.target_modules),
        f"{_UNET_PREFIX}.init_lora_weights": "gaussian",
    }


def _header(metadata: LoraMetadata) -> dict[str, str]:
    return {
        "format": "pt",
        # Where diffusers' save_lora_weights puts the same information, so diffusers tooling reading these
        # bytes gets rank and alpha right too.
        _DIFFUSERS_METADATA_KEY: json.dumps(diffusers_adapter_metadata(metadata), indent=2, sort_keys=True),
        "likeness.format": LORA_FORMAT,
        "likeness.rank": str(metadata.rank),
        "likeness.alpha": repr(float(metadata.alpha)),
        "likeness.base_family": metadata.base_family,
        "likeness.subject_phrase": metadata.subject_phrase,
        "likeness.target_modules": json.dumps(metadata.target_modules),
    }


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
