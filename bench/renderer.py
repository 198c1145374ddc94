"""Renderer throughput: our worker against a bare resident pipeline (the ceiling) and a naive renderer.

For N subjects x M images (default 4 x 8), all measured side by side in this process, on the same
pipeline weights, styles and seeds:

- ceiling: one resident pipeline renders each subject's M images in one batch; no LoRA, no I/O;
- ours: the real RenderWorker on a real work queue (NATS JetStream), real S3 (SeaweedFS) and Vault API
  (OpenBao), started here: per job the record is read and updated, the subject's LoRA is fetched and
  decrypted (Vault + AES-GCM), merged into the resident UNet, the M images render in one batch, are marked
  (watermark, IPTC XMP, C2PA manifest), encrypted under the subject's key and stored, and the LoRA is taken
  out again. Goal: at least 85 % of the ceiling's throughput;
- naive: per job, the pipeline and the LoRA are loaded from disk (diffusers `from_pretrained` and
  `load_lora_weights`), then the images render one at a time and go through the same marking, encryption
  and storage. Goal: ours at least 3x faster;
- LoRA switch (take one subject's LoRA out, merge the next from bytes in memory) against a full pipeline
  load from disk. Goal: at least 10x faster.

The model is SD 1.5-shaped at CPU scale: SD 1.5's UNet block layout (3 cross-attention down/up blocks, a
plain one, mid block) at reduced widths, its text-encoder shape (CLIP ViT-L/14: 12 layers, width 768,
77 tokens; over the small dev vocabulary) and a 4-level VAE, rendering 128 x 128 px. The text encoder keeps
its real size because its cost is real: loading it is a large part of a pipeline load, and running it is
per call (once per batch for us, once per image for the naive renderer). On 2 CPU cores batching gains
less than on a GPU, so fewer sampler steps (default 10) keep loads and per-call costs in the proportion
they have on a GPU worker. Torch uses one thread by default: on a shared 2-core machine two OpenMP threads
make timings erratic, and the ratios are what this measures. `bench/gpu_renderer.sh` measures the real
512 px, 25-step figures on a GPU.

    .venv/bin/python bench/renderer.py [--subjects 4] [--images 8] [--steps 10] [--threads 1]
"""

# ruff: noqa: E402  (the import path is fixed before the imports)
from __future__ import annotations

import sys
from pathlib import Path

# This script is named like the renderer package: its own folder must not shadow that package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_diffusers
from nats.js.api import RetentionPolicy, StreamConfig
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from likeness import ids
from likeness.jobs import TERMINAL, JobRecords
from likeness.object_names import lora_key, render_image_key
from likeness.runtime import Platform
from likeness.sealed import ObjectRef
from likeness.timeutil import now_timestamp
from likeness.v1 import common_pb2, jobs_pb2, renderer_pb2
from likeness_dev.infra import Infra
from likeness_dev.testing import private_tenant_queues, provisioned_kv
from likeness_ml.base_model import detect_family, load_pipeline
from likeness_ml.lora_adapters import remove_lora
from likeness_ml.lora_format import LORA_TARGET_MODULES, LoraMetadata, serialize_lora
from likeness_ml.subject import SUBJECT_PHRASE
from likeness_ml.tiny_tokenizer import END_OF_TEXT, MODEL_MAX_LENGTH, START_OF_TEXT, tiny_vocabulary
from renderer.config import RendererSettings
from renderer.generation import generate
from renderer.lora_swap import merged_lora
from renderer.styles import load_styles
from renderer.worker import RenderWorker

GOAL_OF_CEILING = 0.85
GOAL_VS_NAIVE = 3.0
GOAL_SWITCH_VS_LOAD = 10.0
TENANT = "bench"
LATENT = 16  # x8 VAE => 128 px
TEXT_WIDTH = 768


def build_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=LATENT,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64, 128, 128),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=TEXT_WIDTH,
            attention_head_dim=8,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            sample_size=LATENT * 8,
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 64, 64, 64),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            norm_num_groups=32,
        )
        vocabulary = tiny_vocabulary()
        tokenizer = CLIPTokenizer(
            vocab=dict(vocabulary.vocab),
            merges=list(vocabulary.merges),
            bos_token=START_OF_TEXT,
            eos_token=END_OF_TEXT,
            pad_token=END_OF_TEXT,
            unk_token=END_OF_TEXT,
            model_max_length=MODEL_MAX_LENGTH,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=TEXT_WIDTH,
                intermediate_size=3072,
                projection_dim=TEXT_WIDTH,
                num_hidden_layers=12,
                num_attention_heads=12,
                max_position_embeddings=MODEL_MAX_LENGTH,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        ).eval()
    scheduler = PNDMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def write_model(out_dir: Path) -> tuple[Path, StableDiffusionPipeline]:
    pipe = build_pipeline()
    pipe.save_pretrained(out_dir, safe_serialization=True)
    vocabulary = tiny_vocabulary()
    (out_dir / "tokenizer" / "vocab.json").write_text(vocabulary.vocab_json(), encoding="utf-8")
    (out_dir / "tokenizer" / "merges.txt").write_text(vocabulary.merges_txt(), encoding="utf-8")
    return out_dir, pipe


def random_lora(pipe: StableDiffusionPipeline, seed: int, rank: int = 8) -> bytes:
    config = LoraConfig(
        r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=list(LORA_TARGET_MODULES)
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe.unet.add_adapter(config, adapter_name="bench")
    try:
        state = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet, adapter_name="bench"))
    finally:
        remove_lora(pipe.unet)
    state = {key: value * 0.1 for key, value in state.items()}
    return serialize_lora(state, LoraMetadata(rank, float(rank), detect_family(pipe), SUBJECT_PHRASE))


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path, infra: Infra) -> None:
        self.args = args
        self.workdir = workdir
        self.infra = infra
        self.styles = list(load_styles())
        self.seeds = [[1000 * s + i for i in range(args.images)] for s in range(args.subjects)]

    async def run(self) -> dict[str, float]:
        args = self.args
        model_dir, built = write_model(self.workdir / "model")
        loras = [random_lora(built, seed=100 + s) for s in range(args.subjects + 1)]
        del built
        lora_files = []
        for index, lora in enumerate(loras):  # for the naive renderer only (random weights, no person)
            path = self.workdir / f"lora-{index}" / "pytorch_lora_weights.safetensors"
            path.parent.mkdir()
            path.write_bytes(lora)
            lora_files.append(path)

        env = self.infra.endpoints.as_env()
        settings = RendererSettings.model_validate(
            {k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()}
            | {"base_model": model_dir, "inference_steps": args.steps, "quality_gate": args.gate}
        )
        platform = await Platform.connect(settings, "renderer-bench")
        stream = f"BENCHRENDER{uuid.uuid4().hex[:8].upper()}"
        await platform.bus.js.add_stream(
            StreamConfig(name=stream, subjects=[f"{stream.lower()}.>"], retention=RetentionPolicy.WORK_QUEUE)
        )
        records = JobRecords(
            await provisioned_kv(platform.bus, f"{stream.lower()}-renders"), renderer_pb2.Render
        )
        pipe = load_pipeline(model_dir, torch.device("cpu"))
        worker = RenderWorker(platform, records, load_styles(), settings, pipe=pipe)
        await private_tenant_queues(platform.bus.js, stream, worker, [TENANT])
        subjects = [await self._subject(platform, lora) for lora in loras]
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            print("warming up ...", file=sys.stderr, flush=True)
            warm = subjects[-1]
            await self._jobs(platform, records, stream, [warm], [self.seeds[0]])
            generate(pipe, load_styles()[self.styles[0]], [1], SUBJECT_PHRASE, args.steps)

            # Interleaved rounds, best of each: a shared machine's noise hits both alike.
            ceiling, ours = [], []
            for round_ in range(1, args.rounds + 1):
                print(f"round {round_}: ceiling ...", file=sys.stderr, flush=True)
                ceiling.append(self._ceiling(pipe))
                print(f"round {round_}: ours ...", file=sys.stderr, flush=True)
                ours.append(
                    await self._jobs(platform, records, stream, subjects[: args.subjects], self.seeds)
                )
            print("switch and load ...", file=sys.stderr, flush=True)
            switch = self._switch(pipe, loras)
            decrypt = await self._decrypt(platform, subjects)
            load = statistics.median(
                timed(lambda: load_pipeline(model_dir, torch.device("cpu"))) for _ in range(3)
            )
            print("naive ...", file=sys.stderr, flush=True)
            naive = self._naive(platform, model_dir, lora_files, subjects, worker)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)
            await platform.bus.js.delete_stream(stream)
            await platform.close()
        return {
            "ceiling": min(ceiling),
            "rounds": args.rounds,
            "ours": min(ours),
            "naive": naive,
            "switch": switch,
            "decrypt": decrypt,
            "load": load,
        }

    async def _subject(self, platform: Platform, lora: bytes) -> tuple[str, str]:
        subject_id, training_id = ids.new_id("sub"), ids.new_id("trn")
        await asyncio.to_thread(platform.keys.create, subject_id)
        ref = ObjectRef(TENANT, subject_id, lora_key(TENANT, subject_id, training_id), "lora")
        await asyncio.to_thread(platform.sealed.put, ref, lora)
        return subject_id, training_id

    async def _jobs(
        self,
        platform: Platform,
        records: JobRecords[renderer_pb2.Render],
        stream: str,
        subjects: list[tuple[str, str]],
        seeds: list[list[int]],
    ) -> float:
        """Seconds from queueing one job per subject (one style, its images) until the last one is done."""
        render_ids = []
        started = time.perf_counter()
        for index, ((subject_id, training_id), batch) in enumerate(zip(subjects, seeds, strict=True)):
            render = renderer_pb2.Render(
                id=ids.new_id("ren"),
                tenant=TENANT,
                subject_id=subject_id,
                training_id=training_id,
                status=common_pb2.JOB_STATUS_QUEUED,
                styles=[self.styles[index % len(self.styles)]],
                images_per_style=len(batch),
                seed=batch[0],
                created_at=now_timestamp(),
                updated_at=now_timestamp(),
            )
            await records.create(render)
            job = jobs_pb2.RenderJob(
                render_id=render.id,
                tenant=TENANT,
                subject_id=subject_id,
                training_id=training_id,
                styles=render.styles,
                images_per_style=len(batch),
                seed=batch[0],
            )
            await platform.bus.publish(f"{stream.lower()}.{TENANT}.{subject_id}", job, msg_id=render.id)
            render_ids.append(render.id)
        # One worker takes the jobs in order: the last one done means all are. Polled gently, since this
        # process's event loop shares the GIL with the worker it measures.
        while True:
            found = await records.get(TENANT, render_ids[-1])
            if found is not None and found[0].status in TERMINAL:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        for render_id in render_ids:
            found = await records.get(TENANT, render_id)
            if found is None or found[0].status != common_pb2.JOB_STATUS_SUCCEEDED:
                raise RuntimeError(f"bench render did not succeed: {found[0].error if found else 'gone'}")
        return elapsed

    def _ceiling(self, pipe: StableDiffusionPipeline) -> float:
        styles = load_styles()

        def run() -> None:
            for index, batch in enumerate(self.seeds):
                generate(
                    pipe,
                    styles[self.styles[index % len(self.styles)]],
                    batch,
                    SUBJECT_PHRASE,
                    self.args.steps,
                )

        return timed(run)

    def _switch(self, pipe: StableDiffusionPipeline, loras: list[bytes]) -> float:
        """Median seconds to take one LoRA out and merge the next (from bytes in memory)."""
        samples = []
        for lora in loras * 3:
            started = time.perf_counter()
            with merged_lora(pipe, lora):
                pass
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    async def _decrypt(self, platform: Platform, subjects: list[tuple[str, str]]) -> float:
        refs = [ObjectRef(TENANT, s, lora_key(TENANT, s, t), "lora") for s, t in subjects]
        return statistics.median(
            [await asyncio.to_thread(timed, lambda r=r: platform.sealed.get(r)) for r in refs]
        )

    def _naive(
        self,
        platform: Platform,
        model_dir: Path,
        lora_files: list[Path],
        subjects: list[tuple[str, str]],
        worker: RenderWorker,
    ) -> float:
        styles = load_styles()

        def run() -> None:
            for index, batch in enumerate(self.seeds):
                pipe = load_pipeline(model_dir, torch.device("cpu"))
                pipe.load_lora_weights(str(lora_files[index].parent), weight_name=lora_files[index].name)
                subject_id, _ = subjects[index]
                render_id = ids.new_id("ren")
                for seed in batch:
                    (image,) = generate(
                        pipe,
                        styles[self.styles[index % len(self.styles)]],
                        [seed],
                        SUBJECT_PHRASE,
                        self.args.steps,
                    )
                    png = worker.marker.mark(image)
                    key = render_image_key(TENANT, subject_id, render_id, ids.new_id("img"))
                    platform.sealed.put(ObjectRef(TENANT, subject_id, key, "render"), png)
                del pipe

        return timed(run)


def report(args: argparse.Namespace, measured: dict[str, float]) -> dict[str, object]:
    images = args.subjects * args.images
    ceiling, ours, naive = measured["ceiling"], measured["ours"], measured["naive"]
    result = {
        "bench": "renderer",
        "of_ceiling": round(ceiling / ours, 3),
        "vs_naive": round(naive / ours, 2),
        "switch_vs_load": round(measured["load"] / measured["switch"], 1),
        "images_per_s": round(images / ours, 3),
    }
    rows = [
        (
            "ceiling: resident pipeline, batched, no LoRA, no I/O",
            ceiling,
            f"best of {int(measured['rounds'])}",
        ),
        (
            "ours: queue, decrypt, merge, render, mark, encrypt, store",
            ours,
            f"best of {int(measured['rounds'])}",
        ),
        ("naive: load pipeline + LoRA per job, 1 image per call", naive, ""),
    ]
    print(
        f"\nrenderer: {args.subjects} subjects x {args.images} images, {LATENT * 8} px, {args.steps} steps, "
        f"gate {args.gate}, torch threads {torch.get_num_threads()}"
    )
    print(f"{'':58} {'seconds':>9} {'images/s':>9}")
    for label, seconds, note in rows:
        print(f"{label:58} {seconds:9.2f} {images / seconds:9.3f}  {note}")
    print(f"{'LoRA switch: unmerge + merge next, from bytes in RAM':58} {measured['switch'] * 1000:8.1f}ms")
    print(f"{'LoRA fetch + decrypt (S3, Vault, AES-GCM)':58} {measured['decrypt'] * 1000:8.1f}ms")
    print(f"{'full pipeline load from disk':58} {measured['load'] * 1000:8.1f}ms")
    print(
        f"\nours / ceiling {result['of_ceiling']:.3f} (goal >= {GOAL_OF_CEILING}), "
        f"ours vs naive {result['vs_naive']:.2f}x (goal >= {GOAL_VS_NAIVE}), "
        f"switch vs load {result['switch_vs_load']:.1f}x (goal >= {GOAL_SWITCH_VS_LOAD})"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--images", type=int, default=8, help="images per subject (one job, one style)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--gate", choices=["off", "score", "enforce"], default="score")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of ceiling and ours")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="likeness-bench-") as tmp:
        workdir = Path(tmp)
        infra = Infra(workdir / "infra")
        infra.start()
        try:
            measured = asyncio.run(Bench(args, workdir, infra).run())
            print(f"measured: {measured}", file=sys.stderr, flush=True)
        finally:
            infra.stop()
    print(json.dumps(report(args, measured)))


if __name__ == "__main__":
    main()
