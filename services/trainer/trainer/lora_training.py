"""DreamBooth-LoRA training of one subject on the resident base pipeline, entirely in memory.

The method is diffusers' ``examples/dreambooth/train_dreambooth_lora.py`` (UNet-only LoRA on the attention
projections, epsilon/v-prediction MSE, AdamW on LoRA params, no prior preservation), cut into small typed
functions and with what is constant over a job hoisted out of the loop: the photos' VAE latent
distributions (and their mirror images) and the instance-prompt embedding are computed once.

Runs are resumable: every ``checkpoint_every`` steps the loop hands a snapshot of its whole state
(``TrainingState``) to ``on_checkpoint``, and ``resume=`` continues from one exactly where it left off, so
an interrupted and resumed run ends with the same LoRA as an uninterrupted one.

The pipeline is shared between jobs, so ``train_lora`` always takes the adapter off again (even when a
callback raises), and the result is serialized to bytes in memory: photos and LoRA never touch disk.
A pipeline serves one job at a time: training is not safe to run concurrently with anything on it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.training_utils import cast_training_params
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from PIL import ImageOps

from likeness_ml.base_model import native_resolution
from likeness_ml.lora_adapters import has_lora, remove_lora
from likeness_ml.lora_format import LORA_TARGET_MODULES, LoraMetadata, serialize_lora
from trainer.checkpoints import CheckpointMismatch, TrainingState
from trainer.presets import TrainConfig

__all__ = [
    "BatchSampler",
    "StepReport",
    "TrainResult",
    "TrainTimings",
    "add_training_lora",
    "make_optimizer",
    "remove_lora",
    "run_fingerprint",
    "train_lora",
]

TRAINING_ADAPTER = "likeness_training"
_VAE_CHUNK = 4


@dataclass(frozen=True)
class StepReport:
    step: int  # steps completed so far (1-based, counting those before a resume)
    total_steps: int
    loss: float
    elapsed_s: float  # since this run started
    resumed_from: int = 0  # the step this run started at

    @property
    def eta_s(self) -> float:
        done = self.step - self.resumed_from
        return self.elapsed_s / done * (self.total_steps - self.step) if done > 0 else 0.0


@dataclass(frozen=True)
class TrainTimings:
    prepare_s: float  # image preprocessing, VAE encoding, prompt encoding, adapter setup, resume
    train_s: float  # this run's steps, including taking checkpoint snapshots
    serialize_s: float
    checkpoint_s: float = 0.0  # of train_s: taking the snapshots handed to on_checkpoint


@dataclass(frozen=True)
class TrainResult:
    lora_safetensors: bytes  # empty when cancelled: a half-trained LoRA is never handed out
    metadata: LoraMetadata
    losses: list[float]  # the whole run's, including the steps before a resume
    steps_done: int
    cancelled: bool
    timings: TrainTimings
    resumed_from: int = 0
    checkpoints: int = 0
    train_seconds_total: float = 0.0  # steps over all attempts


@dataclass(frozen=True)
class LatentPool:
    """Per training view (each photo and its mirror image): the VAE posterior's mean and std, fp32."""

    mean: torch.Tensor
    std: torch.Tensor

    def __len__(self) -> int:
        return int(self.mean.shape[0])


def train_lora(
    pipe: StableDiffusionPipeline,
    images: Sequence[PIL.Image.Image],
    config: TrainConfig,
    on_step: Callable[[StepReport], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    *,
    resume: TrainingState | None = None,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[[TrainingState], None] | None = None,
) -> TrainResult:
    """Train a subject LoRA on images; the pipeline is left exactly as it was (no adapter attached).

    With `on_checkpoint` and `checkpoint_every` > 0, a snapshot of the loop goes to `on_checkpoint` after
    every `checkpoint_every`-th step (not after the last one: the LoRA follows). `resume` continues from
    such a snapshot; CheckpointMismatch if it belongs to a run with other hyperparameters or photos.
    """
    if not images:
        raise ValueError("no training images")
    started = time.perf_counter()
    unet = pipe.unet
    if has_lora(unet):
        remove_lora(unet)  # a clean base model is the precondition; never train on top of someone else
    for frozen in (pipe.vae, pipe.text_encoder, unet):
        frozen.requires_grad_(False)
    resolution = config.resolution or native_resolution(pipe)
    pool = encode_latent_pool(pipe, images, resolution)
    prompt_embeds = encode_prompt(pipe, config.instance_prompt)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    fingerprint = run_fingerprint(config, resolution, len(pool))
    if resume is not None:
        resume.check(fingerprint)
        if not 0 < resume.step < config.steps:
            raise CheckpointMismatch(f"checkpoint step {resume.step} is outside 1..{config.steps - 1}")
    metadata = LoraMetadata(
        rank=config.rank,
        alpha=config.alpha,
        base_family=config.base_family,
        subject_phrase=config.subject_phrase,
    )
    cancelled = False
    checkpoints = 0
    snapshot_s = 0.0
    add_training_lora(unet, config)
    try:
        named = trainable_parameters(unet)
        optimizer = make_optimizer([parameter for _, parameter in named], config)
        # One CPU generator draws everything random in the loop, so runs are reproducible from config.seed
        # (and draw the same noise on CPU and GPU), and its state is all a checkpoint needs of randomness.
        generator = torch.Generator(device="cpu").manual_seed(config.seed)
        sampler = BatchSampler(len(pool), config.batch_size, generator)
        losses: list[float] = []
        earlier_train_s = 0.0
        if resume is not None:
            restore_state(resume, named, optimizer, generator, sampler)
            losses = list(resume.losses)
            earlier_train_s = resume.train_seconds
        first_step = len(losses)
        prepared = time.perf_counter()
        with _training_mode(unet, config.gradient_checkpointing):
            for step in range(first_step, config.steps):
                if should_stop is not None and should_stop():
                    cancelled = True
                    break
                loss = training_step(
                    unet, noise_scheduler, pool, prompt_embeds, sampler.next(), generator, optimizer, config
                )
                losses.append(loss)
                done = step + 1
                if _checkpoint_due(done, config.steps, checkpoint_every) and on_checkpoint is not None:
                    snapshot_started = time.perf_counter()
                    train_s = earlier_train_s + snapshot_started - prepared
                    state = capture_state(done, named, optimizer, generator, sampler, losses, train_s)
                    snapshot_s += time.perf_counter() - snapshot_started
                    on_checkpoint(replace(state, fingerprint=dict(fingerprint)))
                    checkpoints += 1
                if on_step is not None:
                    now = time.perf_counter()
                    on_step(StepReport(done, config.steps, loss, now - started, resumed_from=first_step))
        trained = time.perf_counter()
        lora_safetensors = b"" if cancelled else serialize_lora(unet_lora_state_dict(unet), metadata)
    finally:
        remove_lora(unet)
    finished = time.perf_counter()
    return TrainResult(
        lora_safetensors=lora_safetensors,
        metadata=metadata,
        losses=losses,
        steps_done=len(losses),
        cancelled=cancelled,
        timings=TrainTimings(
            prepare_s=prepared - started,
            train_s=trained - prepared,
            serialize_s=finished - trained,
            checkpoint_s=snapshot_s,
        ),
        resumed_from=first_step,
        checkpoints=checkpoints,
        train_seconds_total=earlier_train_s + trained - prepared,
    )


def run_fingerprint(config: TrainConfig, resolution: int, views: int) -> dict[str, str | int | float]:
    """What decides a run's trajectory: a checkpoint only continues a run that agrees on all of it."""
    return {
        "steps": config.steps,
        "rank": config.rank,
        "alpha": float(config.alpha),
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "batch_size": config.batch_size,
        "resolution": resolution,
        "views": views,
        "base_family": config.base_family,
        "instance_prompt": config.instance_prompt,
        "max_grad_norm": config.max_grad_norm,
        "adam_weight_decay": config.adam_weight_decay,
    }


def make_optimizer(parameters: Sequence[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the LoRA parameters (fp32). Fused: one kernel for all of them, on CUDA and CPU alike."""
    return torch.optim.AdamW(
        parameters,
        lr=config.learning_rate,
        weight_decay=config.adam_weight_decay,
        betas=(0.9, 0.999),
        fused=True,
    )


def trainable_parameters(unet: UNet2DConditionModel) -> list[tuple[str, torch.nn.Parameter]]:
    """The LoRA parameters by name, in the order the optimizer indexes them."""
    return [(name, parameter) for name, parameter in unet.named_parameters() if parameter.requires_grad]


def capture_state(
    step: int,
    named: Sequence[tuple[str, torch.nn.Parameter]],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    sampler: BatchSampler,
    losses: Sequence[float],
    train_seconds: float,
) -> TrainingState:
    """A snapshot detached from the live tensors (CPU copies), safe to serialize on another thread."""
    optimizer_state = {
        int(index): {slot: _cpu_copy(value) for slot, value in slots.items()}
        for index, slots in optimizer.state_dict()["state"].items()
    }
    return TrainingState(
        step=step,
        lora={name: _cpu_copy(parameter) for name, parameter in named},
        optimizer=optimizer_state,
        generator=generator.get_state(),
        pending_views=sampler.pending,
        losses=list(losses),
        train_seconds=train_seconds,
    )


def restore_state(
    state: TrainingState,
    named: Sequence[tuple[str, torch.nn.Parameter]],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    sampler: BatchSampler,
) -> None:
    if set(state.lora) != {name for name, _ in named}:
        raise CheckpointMismatch("checkpoint holds other LoRA parameters")
    with torch.no_grad():
        for name, parameter in named:
            parameter.copy_(state.lora[name])
    groups = optimizer.state_dict()["param_groups"]  # from the config, which the fingerprint matched
    optimizer.load_state_dict({"state": state.optimizer, "param_groups": groups})
    generator.set_state(state.generator)
    sampler.pending = state.pending_views


def _checkpoint_due(done: int, total: int, every: int) -> bool:
    # Never after the last step: the LoRA itself follows, and makes every checkpoint obsolete.
    return every > 0 and done % every == 0 and done < total


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to(device="cpu", copy=True)


def add_training_lora(unet: UNet2DConditionModel, config: TrainConfig) -> None:
    """Inject trainable LoRA layers (fp32, seeded init) into the UNet's attention projections."""
    lora_config = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        init_lora_weights="gaussian",  # A ~ N(0, 1/r), B = 0: training starts exactly at the base model
        target_modules=list(LORA_TARGET_MODULES),
    )
    cuda_devices = [unet.device] if unet.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(config.seed)
        unet.add_adapter(lora_config, adapter_name=TRAINING_ADAPTER)
    # The base weights may be bf16; the trainable ones must be fp32 for AdamW (autocast does the rest).
    cast_training_params(unet, dtype=torch.float32)


def unet_lora_state_dict(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """The trained adapter in diffusers' key format, which ``load_lora_weights`` understands."""
    peft_state_dict = get_peft_model_state_dict(unet, adapter_name=TRAINING_ADAPTER)
    state_dict: dict[str, torch.Tensor] = convert_state_dict_to_diffusers(peft_state_dict)
    return state_dict


def training_step(
    unet: UNet2DConditionModel,
    noise_scheduler: DDPMScheduler,
    pool: LatentPool,
    prompt_embeds: torch.Tensor,
    batch: torch.Tensor,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
) -> float:
    device = unet.device
    mean, std = pool.mean[batch], pool.std[batch]
    # Sample the cached posterior, as the reference script's latent_dist.sample() does every step.
    latents = (mean + std * torch.randn(mean.shape, generator=generator)).to(device)
    noise = torch.randn(latents.shape, generator=generator).to(device)
    timesteps = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator
    ).to(device)
    noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    encoder_hidden_states = prompt_embeds.expand(latents.shape[0], -1, -1)
    with _autocast(device):
        prediction = unet(noisy_latents, timesteps, encoder_hidden_states=encoder_hidden_states).sample
    loss = F.mse_loss(prediction.float(), target.float(), reduction="mean")
    torch.autograd.backward(loss)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach().item())


def encode_latent_pool(
    pipe: StableDiffusionPipeline, images: Sequence[PIL.Image.Image], resolution: int
) -> LatentPool:
    """VAE posteriors of every photo and its horizontal flip (the reference script's only augmentation)."""
    pixels = torch.stack([image_to_tensor(image, resolution) for image in images])
    return encode_posteriors(pipe, torch.cat([pixels, torch.flip(pixels, dims=[3])]))


@torch.no_grad()
def encode_posteriors(pipe: StableDiffusionPipeline, pixels: torch.Tensor) -> LatentPool:
    """The VAE posterior (scaled into latent space) of each image in a [-1, 1] NCHW batch."""
    vae = pipe.vae
    means: list[torch.Tensor] = []
    stds: list[torch.Tensor] = []
    for chunk in torch.split(pixels, _VAE_CHUNK):
        posterior = vae.encode(chunk.to(device=vae.device, dtype=vae.dtype)).latent_dist
        means.append(posterior.mean.float().cpu())
        stds.append(posterior.std.float().cpu())
    # Fold the latent scaling into the distribution: scale * (mean + std * eps) = scale*mean + scale*std*eps.
    shift = vae.config.shift_factor or 0.0
    scale = float(vae.config.scaling_factor)
    return LatentPool(mean=(torch.cat(means) - shift) * scale, std=torch.cat(stds) * scale)


@torch.no_grad()
def encode_prompt(pipe: StableDiffusionPipeline, prompt: str) -> torch.Tensor:
    """The text encoder's last hidden state for prompt, shape (1, tokens, width)."""
    tokens = pipe.tokenizer(
        prompt,
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    hidden: torch.Tensor = pipe.text_encoder(tokens.input_ids.to(pipe.text_encoder.device))[0]
    return hidden


def image_to_tensor(image: PIL.Image.Image, resolution: int) -> torch.Tensor:
    """RGB, resized on the short side and center-cropped to resolution², scaled to [-1, 1], CHW fp32."""
    square = ImageOps.fit(image.convert("RGB"), (resolution, resolution), PIL.Image.Resampling.BILINEAR)
    array = np.asarray(square, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class BatchSampler:
    """Endless batches of view indices: a fresh seeded shuffle per epoch, so every view is seen.

    `pending` (the rest of the current epoch) is part of a checkpoint, with the generator's state.
    """

    def __init__(self, pool_size: int, batch_size: int, generator: torch.Generator) -> None:
        self.pool_size = pool_size
        self.batch_size = batch_size
        self.generator = generator
        self._pending: list[int] = []

    @property
    def pending(self) -> list[int]:
        return list(self._pending)

    @pending.setter
    def pending(self, views: Sequence[int]) -> None:
        if any(not 0 <= view < self.pool_size for view in views):
            raise CheckpointMismatch("checkpoint refers to views this run does not have")
        self._pending = list(views)

    def next(self) -> torch.Tensor:
        while len(self._pending) < self.batch_size:
            self._pending.extend(torch.randperm(self.pool_size, generator=self.generator).tolist())
        batch = torch.tensor(self._pending[: self.batch_size])
        del self._pending[: self.batch_size]
        return batch


def _autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _training_mode(unet: UNet2DConditionModel, gradient_checkpointing: bool) -> Iterator[None]:
    """UNet in train mode (and optionally checkpointed) for the loop only; eval mode again afterwards."""
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    try:
        yield
    finally:
        unet.eval()
        if gradient_checkpointing:
            unet.disable_gradient_checkpointing()
