"""Renderer settings (both roles): base model, sampling budget, work-queue timing, the subject cache, the
quality and safety gates and how outputs are marked as AI-generated."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from likeness.config import DEVELOPMENT_SECRETS, JobQueueSettings
from likeness_ml.pipeline_layout import SHA256_OR_EMPTY

#: enforce: re-roll outputs without exactly one face or too far from the person, drop those that never
#: pass; score: record the identity score only; off: no face check. auto: enforce, except on the tiny dev
#: model (its random weights draw no faces), where it scores.
QualityGateSetting = Literal["auto", "enforce", "score", "off"]
QualityGate = Literal["enforce", "score", "off"]


class RendererSettings(JobQueueSettings):
    service_name: str = "renderer"
    base_model: Path = Path(".likeness/models/tiny")
    #: SHA-256 of the base model's `likeness-manifest.json` (printed by `likeness model manifest`): the
    #: worker refuses weights whose manifest is not this one. Required in production.
    base_model_manifest_sha256: str = Field(default="", pattern=SHA256_OR_EMPTY)
    #: Overrides every style's sampler steps when set (the tiny dev model needs only a few).
    inference_steps: int = 0
    max_images_per_style: int = 8
    max_styles: int = 16

    #: Decrypted LoRAs (and face templates) kept in a worker's RAM: at most this many entries and bytes,
    #: each for at most this long after decryption; a subject's erasure drops theirs at once.
    subject_cache_entries: int = 32
    subject_cache_bytes: int = 1024 * 1024 * 1024
    subject_cache_ttl_seconds: float = 900.0

    quality_gate: QualityGateSetting = "auto"
    #: Re-rolls (new seed) per image before the gate gives up on it.
    quality_max_rerolls: int = 2
    #: dlib embedding distance to the subject's templates above which a face is someone else.
    quality_max_distance: float = 0.6
    #: HOG detections scoring below this are not counted as faces (false positives score near 0).
    quality_min_face_score: float = 0.3

    #: The output safety gate. enforce: re-roll outputs the classifier flags, drop those that stay flagged
    #: (the reason counted on the render); score: record the scores only; off: no classifier.
    safety_gate: QualityGate = "enforce"
    #: Directory of the pinned `ViTForImageClassification` (with its `likeness-manifest.json`), provisioned
    #: like the base model. Unset: the gate is off (refused in production unless safety_gate is off).
    safety_model: Path | None = None
    #: SHA-256 of the classifier's `likeness-manifest.json`, as for the base model (required in production).
    safety_model_manifest_sha256: str = Field(default="", pattern=SHA256_OR_EMPTY)
    #: Labels of the classifier that flag an image, and the probability at which they do.
    safety_flagged_labels: list[str] = ["nsfw"]
    safety_threshold: float = Field(default=0.5, gt=0.0, le=1.0)

    #: Instant mode's identity adapter: a pinned IP-Adapter plus-face directory (`image_encoder/`,
    #: `ip-adapter-plus-face.safetensors`, `likeness-manifest.json`) of the base model's family, provisioned
    #: like the base model. Unset: instant renders are refused (`instant_unavailable`).
    identity_adapter: Path | None = None
    #: SHA-256 of the adapter's `likeness-manifest.json`, as for the base model (required in production).
    identity_adapter_manifest_sha256: str = Field(default="", pattern=SHA256_OR_EMPTY)
    #: How strongly the photo steers the image (IP-Adapter scale): higher keeps more of the face and less
    #: of the prompt; plus-face is usually run between 0.5 and 0.8.
    identity_adapter_scale: float = Field(default=0.7, gt=0.0, le=1.5)

    #: Key of the invisible watermark; `likeness verify-image` needs the same one.
    watermark_key: SecretStr = SecretStr("likeness-dev")
    #: Sign a C2PA manifest into every output. Without the two PEMs below (development only) a throwaway
    #: CA and signing certificate are made in memory at start.
    c2pa_sign: bool = True
    #: Certificate chain, leaf first (PEM), and its EC P-256 private key (PEM, PKCS#8).
    c2pa_cert_chain: SecretStr = SecretStr("")
    c2pa_private_key: SecretStr = SecretStr("")

    @model_validator(mode="after")
    def _refuse_development_marking_in_production(self) -> RendererSettings:
        if not self.is_production:
            return self
        problems = []
        key = self.watermark_key.get_secret_value()
        if key.strip().lower() in DEVELOPMENT_SECRETS or len(key) < 32:
            problems.append("LIKENESS_WATERMARK_KEY must be a secret of at least 32 characters")
        if self.c2pa_sign and not (
            self.c2pa_cert_chain.get_secret_value() and self.c2pa_private_key.get_secret_value()
        ):
            problems.append("C2PA signing needs LIKENESS_C2PA_CERT_CHAIN and LIKENESS_C2PA_PRIVATE_KEY")
        if self.safety_gate != "off" and self.safety_model is None:
            problems.append(
                "the output safety gate needs LIKENESS_SAFETY_MODEL (or LIKENESS_SAFETY_GATE=off)"
            )
        if problems:
            raise ValueError("refusing production settings: " + "; ".join(problems))
        return self

    def gate_for(self, tiny_model: bool) -> QualityGate:
        if self.quality_gate != "auto":
            return self.quality_gate
        return "score" if tiny_model else "enforce"

    def safety_gate_in_effect(self) -> QualityGate:
        """The safety gate as run: off without a classifier (production refuses that at start)."""
        return self.safety_gate if self.safety_model is not None else "off"


@lru_cache(maxsize=1)
def get_settings() -> RendererSettings:
    return RendererSettings()
