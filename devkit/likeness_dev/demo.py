"""`likeness demo`: runs the journey against the running dev stack and writes `out/`.

`out/` gets the decrypted headshots (the tenant's copy, which is what a client app would receive), an
`index.html` contact sheet and the erasure record. Nothing of this is kept by the stack itself.

By default the stack renders with the tiny model, whose weights are random: its images are noise by
design. The page and the console say so, and how to point the stack at real weights.
"""

from __future__ import annotations

import html
import json
import mimetypes
import shutil
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from likeness_cli.local_settings import read_dev_env, state_dir_of
from likeness_dev.journey import GatewayClient, JourneyResult, run_journey
from likeness_dev.samples import sample_photos
from likeness_ml.tiny_manifest import is_tiny_model

BASE_MODEL_VARIABLE = "LIKENESS_BASE_MODEL"
REAL_WEIGHTS_HOWTO = (
    f"For real headshots, point the stack at real weights: {BASE_MODEL_VARIABLE} names a diffusers "
    "directory (a Stable Diffusion 1.5, 2.x or SDXL pipeline saved with save_pretrained, safetensors "
    "weights; a single-file checkpoint converts with `likeness model import`), pinned by `likeness model "
    f"manifest DIR`, e.g. `likeness dev down && {BASE_MODEL_VARIABLE}=/models/stable-diffusion-v1-5 "
    "likeness dev up`, then run `likeness demo` again. Trainer and renderer verify and load it at start; on "
    "a CPU a render then takes minutes, not seconds."
)


@dataclass(frozen=True)
class BaseModelInUse:
    """The base model the stack's trainer and renderer run, as dev.env names it."""

    path: str
    tiny: bool

    @property
    def notice(self) -> str:
        """What the images are, in words: noise from random weights, or renders of this model."""
        if not self.tiny:
            return f"Rendered with the base model {self.path}."
        return (
            "These images are noise, by design: the dev stack runs the tiny model, a Stable Diffusion "
            "pipeline of the real shape (about 2M parameters, 64x64 pixels) with random weights, so training "
            "and rendering take seconds on a CPU. Every step of the journey is real (sanitizing, "
            "encryption, LoRA training, rendering, AI marks, erasure); only the weights are not. "
            + REAL_WEIGHTS_HOWTO
        )


def base_model_in_use(env: dict[str, str]) -> BaseModelInUse:
    path = env.get(BASE_MODEL_VARIABLE, "")
    if not path:  # the services' own default: the tiny model
        return BaseModelInUse(path="the tiny model", tiny=True)
    return BaseModelInUse(path=path, tiny=is_tiny_model(Path(path)))


def run_demo(project_dir: Path, out_dir: Path, images_per_style: int = 4) -> JourneyResult:
    env = read_dev_env(state_dir_of(project_dir))
    client = GatewayClient(env["LIKENESS_GATEWAY_URL"], env["LIKENESS_DEV_TOKEN"])
    started = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True)

    try:
        result = run_journey(client, sample_photos(), images_per_style=images_per_style, say=say)
    finally:
        client.close()
    model = base_model_in_use(env)
    write_output(out_dir, result, model)
    say(f"wrote {out_dir / 'index.html'} with {len(result.images)} headshots and the erasure record")
    for line in textwrap.wrap(model.notice, 100):
        print(line, flush=True)
    return result


def write_output(out_dir: Path, result: JourneyResult, model: BaseModelInUse) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "images").mkdir(parents=True)
    tiles = []
    for n, image in enumerate(result.images, start=1):
        extension = mimetypes.guess_extension(image.content_type) or ".png"
        name = f"images/{n:02d}-{image.style}-{image.seed}{extension}"
        (out_dir / name).write_bytes(image.data)
        tiles.append(
            f'<figure><img src="{html.escape(name)}" alt="AI-generated headshot">'
            f"<figcaption>{html.escape(image.style)} · seed {image.seed}</figcaption></figure>"
        )
    (out_dir / "erasure.json").write_text(json.dumps(result.erasure, indent=2) + "\n")
    accepted = sum(p["status"] == "accepted" for p in result.photos)
    styles = len({i.style for i in result.images})
    checks = "".join(f"<li>{html.escape(k)}: HTTP {v}</li>" for k, v in result.after_erasure.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Likeness demo</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 1rem; }}
figure {{ margin: 0; }} img {{ width: 100%; image-rendering: pixelated; border-radius: 6px; }}
figcaption {{ font-size: .85rem; color: #555; }} pre {{ background: #f5f5f5; padding: 1rem; overflow: auto; }}
.notice {{ border-left: 4px solid #c80; background: #fff8e6; padding: .75rem 1rem; max-width: 60rem; }}
</style></head><body>
<h1>Likeness demo: {len(result.images)} AI-generated headshots</h1>
<p class="notice" id="base-model">{_with_code(model.notice)}</p>
<p>Subject <code>{html.escape(result.subject_id)}</code>: {accepted} photos accepted, LoRA trained
({html.escape(str(result.training.get("progress")))}), {len(result.images)} images in {styles} styles.
Every image is marked as AI-generated.</p>
<div class="grid">{"".join(tiles)}</div>
<h2>Erasure record</h2>
<p>The subject was then erased: their Vault key destroyed first, then every object, record and event.</p>
<ul>{checks}</ul>
<pre>{html.escape(json.dumps(result.erasure, indent=2))}</pre>
</body></html>
"""
    (out_dir / "index.html").write_text(page)


def _with_code(text: str) -> str:
    """Escaped text whose `backticked` parts are set as code."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{part}</code>" if n % 2 else part for n, part in enumerate(parts))
