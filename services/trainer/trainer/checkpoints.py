"""A training checkpoint's content and its wire format: everything needed to continue a run exactly.

A resumed run must produce the same LoRA as one that was never interrupted, so the checkpoint holds the
whole state the loop depends on: the LoRA weights, AdamW's moments and step counts, the job generator's
state (every random draw of the loop comes from it: batch order, posterior samples, noise, timesteps), the
rest of the current epoch's shuffled batch orders, and the losses so far (the report's loss curve). A
fingerprint of the hyperparameters guards against continuing a run with different ones.

The bytes are safetensors (tensors only, nothing executable, unlike a pickle) produced and parsed in
memory: a checkpoint encodes a person's face as much as the LoRA does and is only ever stored encrypted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import safetensors
import safetensors.torch
import torch

CHECKPOINT_FORMAT = "likeness-checkpoint/1"
_META_KEY = "likeness.checkpoint"
_LORA = "lora."
_OPTIMIZER = "adam."
_GENERATOR = "generator"

Fingerprint = Mapping[str, str | int | float]


class CheckpointMismatch(ValueError):
    """The checkpoint belongs to a run with other hyperparameters (or is not a checkpoint at all)."""


@dataclass(frozen=True)
class TrainingState:
    """The loop's state after `step` completed steps; tensors on the CPU."""

    step: int
    lora: dict[str, torch.Tensor]  # trainable parameter name -> value
    optimizer: dict[int, dict[str, torch.Tensor]]  # AdamW state by parameter index
    generator: torch.Tensor  # torch.Generator.get_state()
    pending_views: list[int]  # the current epoch's shuffled views not yet used
    losses: list[float]
    train_seconds: float  # time spent in steps so far, over all attempts
    fingerprint: dict[str, str | int | float] = field(default_factory=dict)
    pending_class_views: list[int] = field(default_factory=list)  # likewise, prior preservation's

    def check(self, fingerprint: Fingerprint) -> None:
        if dict(fingerprint) != self.fingerprint:
            changed = sorted(
                k for k in {*fingerprint, *self.fingerprint} if fingerprint.get(k) != self.fingerprint.get(k)
            )
            raise CheckpointMismatch(f"checkpoint is from a run with other settings: {', '.join(changed)}")


def serialize_state(state: TrainingState) -> bytes:
    tensors: dict[str, torch.Tensor] = {f"{_LORA}{name}": value for name, value in state.lora.items()}
    for index, slots in state.optimizer.items():
        for slot, value in slots.items():
            tensors[f"{_OPTIMIZER}{index}.{slot}"] = value
    tensors[_GENERATOR] = state.generator
    meta = {
        "format": CHECKPOINT_FORMAT,
        "step": state.step,
        "pending_views": state.pending_views,
        "pending_class_views": state.pending_class_views,
        # repr of a float round-trips exactly through JSON, so the loss curve survives bit for bit.
        "losses": state.losses,
        "train_seconds": state.train_seconds,
        "fingerprint": state.fingerprint,
    }
    cpu = {name: value.detach().to("cpu").contiguous() for name, value in tensors.items()}
    return safetensors.torch.save(cpu, metadata={_META_KEY: json.dumps(meta, sort_keys=True)})


def parse_state(data: bytes) -> TrainingState:
    try:
        tensors = safetensors.torch.load(data)
        meta = json.loads(_metadata(data)[_META_KEY])
    except (KeyError, ValueError, RuntimeError, safetensors.SafetensorError) as exc:
        raise CheckpointMismatch("not a training checkpoint") from exc
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatch(f"unsupported checkpoint format {meta.get('format')!r}")
    lora: dict[str, torch.Tensor] = {}
    optimizer: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith(_LORA):
            lora[name.removeprefix(_LORA)] = value
        elif name.startswith(_OPTIMIZER):
            index, slot = name.removeprefix(_OPTIMIZER).split(".", 1)
            optimizer.setdefault(int(index), {})[slot] = value
    return TrainingState(
        step=int(meta["step"]),
        lora=lora,
        optimizer=optimizer,
        generator=tensors[_GENERATOR],
        pending_views=[int(view) for view in meta["pending_views"]],
        pending_class_views=[int(view) for view in meta.get("pending_class_views", [])],
        losses=[float(loss) for loss in meta["losses"]],
        train_seconds=float(meta["train_seconds"]),
        fingerprint=dict(meta["fingerprint"]),
    )


def _metadata(data: bytes) -> dict[str, str]:
    # safetensors.torch.load drops the metadata; safe_open needs a file. The header is a u64 length and JSON.
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict):
        raise ValueError("no metadata")
    return {str(key): str(value) for key, value in metadata.items()}
