"""Outputs are marked as AI-generated: invisible watermark (survives JPEG q85), IPTC XMP, signed C2PA."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import PIL.Image
import pytest
import skimage.data
from diffusers import StableDiffusionPipeline

from likeness_marks import watermark
from likeness_marks.c2pa_reading import c2pa_available, read_manifest
from likeness_marks.iptc import encode_marked_png, is_marked
from likeness_ml.subject import SUBJECT_PHRASE
from renderer.config import RendererSettings
from renderer.generation import render
from renderer.marking import OutputMarker
from renderer.provenance import Credentials, ManifestSigner
from renderer.styles import get_style

KEY = "test-watermark-key-0123456789abcdef"
STEPS = 3


def _jpeg(image: PIL.Image.Image, quality: int = 85) -> PIL.Image.Image:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return PIL.Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def _decode(data: bytes) -> PIL.Image.Image:
    with PIL.Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def outputs(pipe: StableDiffusionPipeline, lora: bytes) -> list[PIL.Image.Image]:
    """Unmarked tiny-model renders, as the worker gets them from the pipeline."""
    return render(pipe, lora, get_style("corporate"), [1, 2, 3, 4], SUBJECT_PHRASE, num_inference_steps=STEPS)


# --- the watermark -----------------------------------------------------------------------------------


def test_watermark_survives_a_jpeg_q85_re_encode(outputs: list[PIL.Image.Image]) -> None:
    for image in outputs:
        marked = watermark.embed(image, KEY)
        assert watermark.detect(marked, KEY).marked
        after_jpeg = watermark.detect(_jpeg(marked, 85), KEY)
        assert after_jpeg.marked, after_jpeg
        assert after_jpeg.samples == 8 * 8 * len(watermark.COEFFICIENTS)  # 64x64 px: 64 blocks


def test_watermark_is_absent_from_unmarked_images(outputs: list[PIL.Image.Image]) -> None:
    for image in outputs:
        assert not watermark.detect(image, KEY).marked
        assert not watermark.detect(_jpeg(image, 85), KEY).marked


def test_watermark_needs_the_key(outputs: list[PIL.Image.Image]) -> None:
    marked = _jpeg(watermark.embed(outputs[0], KEY))
    assert watermark.detect(marked, KEY).marked
    assert not watermark.detect(marked, "some-other-key").marked
    with pytest.raises(ValueError, match="empty"):
        watermark.embed(outputs[0], "")


def test_watermark_is_invisible(outputs: list[PIL.Image.Image]) -> None:
    for image in outputs:
        before = np.asarray(image, dtype=float)
        after = np.asarray(watermark.embed(image, KEY), dtype=float)
        psnr = 10 * np.log10(255.0**2 / np.mean((before - after) ** 2))
        assert psnr >= 40.0
        assert np.abs(before - after).max() <= 16


def _unmarked_corpus() -> list[PIL.Image.Image]:
    """Varied unmarked images: natural photos at several sizes and crops, flat, gradient, noise, JPEG'd."""
    rng = np.random.default_rng(7)
    photos = [
        skimage.data.astronaut(),
        skimage.data.chelsea(),
        skimage.data.coffee(),
        np.stack([skimage.data.camera()] * 3, axis=-1),
    ]
    corpus: list[PIL.Image.Image] = []
    for photo in photos:
        image = PIL.Image.fromarray(photo)
        for side in (64, 128, 256):
            for _ in range(12):
                x = int(rng.integers(0, image.width - side))
                y = int(rng.integers(0, image.height - side))
                crop = image.crop((x, y, x + side, y + side))
                corpus.append(crop)
                corpus.append(_jpeg(crop, int(rng.integers(60, 96))))
        corpus.append(image.resize((512, 512)))
    for value in (0, 17, 128, 255):
        corpus.append(PIL.Image.new("RGB", (128, 128), (value, value, value)))
    ramp = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))
    corpus.append(PIL.Image.fromarray(np.stack([ramp, ramp.T, ramp], axis=-1)))
    for _ in range(40):
        corpus.append(PIL.Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    return corpus


def test_false_positives_on_unmarked_images_stay_far_below_the_threshold() -> None:
    """The score of an unmarked image is a z-score: about N(0, 1) whatever the image (the key's dither
    makes the lattice residues uniform). Measured here on ~340 varied images, for two keys."""
    scores: list[float] = []
    for image in _unmarked_corpus():
        for key in (KEY, "second-key"):
            scores.append(watermark.detect(image, key).score)
    values = np.array(scores)
    assert len(values) > 600
    assert values.max() < watermark.THRESHOLD - 1.5, values.max()
    assert abs(values.mean()) < 0.25
    assert 0.75 < values.std() < 1.25


def test_tiny_images_carry_no_mark() -> None:
    tiny = PIL.Image.new("RGB", (7, 7), (200, 10, 10))
    assert watermark.embed(tiny, KEY).size == (7, 7)
    assert watermark.detect(tiny, KEY).samples == 0
    assert not watermark.detect(tiny, KEY).marked


# --- metadata and C2PA -------------------------------------------------------------------------------

needs_c2pa = pytest.mark.skipif(not c2pa_available(), reason="c2pa-python is not installed")


@pytest.fixture(scope="module")
def signer_and_anchor() -> tuple[ManifestSigner, str]:
    if not c2pa_available():
        pytest.skip("c2pa-python is not installed")
    credentials, ca_pem = Credentials.ephemeral()
    return ManifestSigner(credentials), ca_pem


@needs_c2pa
def test_outputs_carry_all_three_marks(
    outputs: list[PIL.Image.Image], signer_and_anchor: tuple[ManifestSigner, str]
) -> None:
    signer, ca_pem = signer_and_anchor
    data = OutputMarker(KEY, signer).mark(outputs[0])
    assert data.startswith(b"\x89PNG")
    assert is_marked(data)
    assert watermark.detect(_decode(data), KEY).marked
    report = read_manifest(data, "PNG")
    assert report is not None
    assert report.says_ai_generated
    assert report.validation_state == "Valid"  # signed correctly, by a CA nobody trusts yet
    trusted = read_manifest(data, "PNG", trust_anchors_pem=ca_pem)
    assert trusted is not None
    assert trusted.validation_state == "Trusted"
    assert trusted.signer == "Likeness renderer"


@needs_c2pa
def test_a_changed_image_fails_c2pa_validation(
    outputs: list[PIL.Image.Image], signer_and_anchor: tuple[ManifestSigner, str]
) -> None:
    signer, ca_pem = signer_and_anchor
    data = bytearray(OutputMarker(KEY, signer).mark(outputs[1]))
    pixels = data.index(b"IDAT") + 16
    data[pixels] ^= 0xFF
    report = read_manifest(bytes(data), "PNG", trust_anchors_pem=ca_pem)
    assert report is not None
    assert report.validation_state == "Invalid"
    assert "assertion.dataHash.mismatch" in report.failures


def test_after_a_jpeg_re_encode_only_the_watermark_is_left(outputs: list[PIL.Image.Image]) -> None:
    """Why the watermark exists: re-saving drops metadata and manifests, the pixels keep the mark."""
    signer = ManifestSigner(Credentials.ephemeral()[0]) if c2pa_available() else None
    data = OutputMarker(KEY, signer).mark(outputs[2])
    out = io.BytesIO()
    _decode(data).save(out, format="JPEG", quality=85)
    jpeg = out.getvalue()
    assert not is_marked(jpeg)
    assert read_manifest(jpeg, "JPEG") is None
    assert watermark.detect(_decode(jpeg), KEY).marked


def test_plain_png_has_the_iptc_statement_only(outputs: list[PIL.Image.Image]) -> None:
    data = encode_marked_png(outputs[3])
    assert is_marked(data)
    assert read_manifest(data, "PNG") is None
    assert not watermark.detect(_decode(data), KEY).marked


# --- settings ----------------------------------------------------------------------------------------


def _production(**values: Any) -> dict[str, Any]:
    return {
        "env": "production",
        "s3_secret_key": "real-s3-secret",
        "vault_auth": "kubernetes",
        "nats_url": "tls://nats:4222",
        "s3_endpoint": "https://s3",
        "vault_addr": "https://vault",
        # The token settings every service needs in production (issue 14, part S2).
        "jwks_url": "https://idp.example/jwks.json",
        "jwt_issuer": "https://idp.example/",
        "jwt_audience": "likeness-api",  # not the default (issue 15)
        "audit_pseudonym_secret": "p" * 40,  # the audit trail's pseudonym key (issue 16)
    } | values


def test_production_refuses_the_development_watermark_key_and_missing_c2pa_credentials() -> None:
    with pytest.raises(ValueError, match="WATERMARK_KEY"):
        RendererSettings.model_validate(_production(c2pa_sign=False))
    with pytest.raises(ValueError, match="C2PA"):
        RendererSettings.model_validate(_production(watermark_key="w" * 40))
    RendererSettings.model_validate(_production(watermark_key="w" * 40, c2pa_sign=False, safety_gate="off"))


def test_configured_c2pa_credentials_must_match() -> None:
    credentials, _ = Credentials.ephemeral()
    other, _ = Credentials.ephemeral()
    from cryptography.hazmat.primitives import serialization

    def pem(c: Credentials) -> str:
        return c.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    assert Credentials.from_pem(credentials.chain_pem, pem(credentials)).chain_pem == credentials.chain_pem
    with pytest.raises(Exception, match="does not belong"):
        Credentials.from_pem(credentials.chain_pem, pem(other))
