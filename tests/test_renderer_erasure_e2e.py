"""The renderer in the running stack: a render comes out marked (IPTC, watermark, C2PA) and is served
through the gateway; erasing the person purges the worker's cache of them and every later fetch answers
404 or 410.

The subject's LoRA is sealed here directly under their key (the trainer's part is tested elsewhere), and
the render is submitted to the renderer's gRPC API, so this test costs seconds, not a training.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable

import grpc
import httpx
import PIL.Image
import pytest
import torch
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from likeness import ids
from likeness.config import CommonSettings
from likeness.grpc_tls import channel_credentials
from likeness.grpc_user_tokens import token_metadata
from likeness.object_names import lora_key
from likeness.sealed import ObjectRef, SealedObjects
from likeness.store import ObjectStore
from likeness.v1 import renderer_pb2, renderer_pb2_grpc
from likeness.vault_transit import SubjectKeys
from likeness_dev.journey import GatewayClient
from likeness_dev.samples import sample_photos
from likeness_dev.stack import DevStack
from likeness_marks import watermark
from likeness_marks.c2pa_reading import c2pa_available, read_manifest
from likeness_marks.iptc import is_marked
from likeness_ml.lora_adapters import remove_lora
from likeness_ml.lora_format import LORA_TARGET_MODULES, LoraMetadata, serialize_lora
from likeness_ml.subject import SUBJECT_PHRASE
from likeness_ml.tiny_model import build_tiny_pipeline
from renderer.config import RendererSettings

TENANT = "dev"
ERASED_DROPS = re.compile(r'^likeness_renderer_subject_cache_dropped_total\{reason="erased"\} (\S+)$', re.M)


def _tiny_lora() -> bytes:
    pipe = build_tiny_pipeline()
    config = LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=list(LORA_TARGET_MODULES))
    torch.manual_seed(5)
    pipe.unet.add_adapter(config, adapter_name="e2e")
    state_dict = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet, adapter_name="e2e"))
    remove_lora(pipe.unet)
    damped = {key: value * 0.3 for key, value in state_dict.items()}
    return serialize_lora(damped, LoraMetadata(4, 4, "tiny", SUBJECT_PHRASE))


def _until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def _erased_drops(stack: DevStack) -> float:
    text = httpx.get(f"{stack.services['renderer-worker'].metrics_url}/metrics", timeout=10).text
    found = ERASED_DROPS.search(text)
    return float(found.group(1)) if found else 0.0


def test_render_is_marked_and_erasure_purges_the_cache_and_every_fetch(
    stack: DevStack, gateway: GatewayClient
) -> None:
    env = stack.infra.endpoints.as_env()
    settings = CommonSettings(**{k.removeprefix("LIKENESS_").lower(): v for k, v in env.items()})
    sealed = SealedObjects(SubjectKeys.from_settings(settings), ObjectStore.from_settings(settings))
    worker_env = stack.services["renderer-worker"].env
    default_key = RendererSettings.model_fields["watermark_key"].default.get_secret_value()
    watermark_key = worker_env.get("LIKENESS_WATERMARK_KEY", default_key)

    subject_id = gateway.json(
        "POST",
        "/v1/subjects",
        expect=(201,),
        json={"consent": {"purpose": "headshots", "policy_version": "1"}},
    )["id"]
    files = [("file", (name, data, "application/octet-stream")) for name, data in sample_photos(1)]
    assert gateway.json("POST", f"/v1/subjects/{subject_id}/photos", files=files)["photos"][0]["status"] == (
        "accepted"
    )
    training_id = ids.new_id("trn")
    lora_ref = ObjectRef(TENANT, subject_id, lora_key(TENANT, subject_id, training_id), "lora")
    sealed.put(lora_ref, _tiny_lora())

    # As the gateway does: mutual TLS with the gateway's certificate, to the renderer's.
    with grpc.secure_channel(
        stack.services["renderer"].address,
        channel_credentials(stack.pki.issue("gateway").material),
        options=[("grpc.ssl_target_name_override", "renderer")],
    ) as channel:
        renderer = renderer_pb2_grpc.RendererServiceStub(channel)
        request = renderer_pb2.SubmitRenderRequest(
            tenant=TENANT,
            subject_id=subject_id,
            training_id=training_id,
            styles=["studio_portrait"],
            images_per_style=2,
            seed=11,
        )
        # ... and with the caller's token, which the renderer verifies again (issue 14, part S2).
        token = token_metadata(stack.mint_token(tenant=TENANT))
        render_id = renderer.SubmitRender(request, timeout=10, metadata=token).render.id
        render = gateway.wait(
            f"/v1/renders/{render_id}",
            lambda r: r["status"] in {"succeeded", "failed", "cancelled"},
            120,
            print,
            "render",
        )
        assert render["status"] == "succeeded", render.get("error")
        assert [image["seed"] for image in render["images"]] == [11, 12]
        url = render["images"][0]["url"]
        data = gateway.call("GET", url).content
        assert is_marked(data)
        with PIL.Image.open(io.BytesIO(data)) as image:
            assert watermark.detect(image.convert("RGB"), watermark_key).marked
        if c2pa_available():
            manifest = read_manifest(data, "PNG")
            assert manifest is not None
            assert manifest.says_ai_generated

        drops_before = _erased_drops(stack)
        erasure_id = gateway.json("DELETE", f"/v1/subjects/{subject_id}", expect=(202,))["erasure_id"]
        _until(
            lambda: gateway.json("GET", f"/v1/erasures/{erasure_id}")["status"] == "completed", "the erasure"
        )
        # The worker held this person's LoRA and face templates: both go on `subject.erased`.
        _until(lambda: _erased_drops(stack) >= drops_before + 2, "the worker to purge its cache")

        for path in (url, f"/v1/renders/{render_id}"):
            _until(
                lambda path=path: gateway.call("GET", path, expect=(200, 404, 410)).status_code in (404, 410),
                f"{path} to be gone",
                timeout=30,
            )
        fetch = renderer_pb2.FetchImageRequest(
            tenant=TENANT, render_id=render_id, image_id=render["images"][0]["id"]
        )
        with pytest.raises(grpc.RpcError) as gone:
            next(iter(renderer.FetchImage(fetch, timeout=10, metadata=token)))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
