"""The output safety gate: the classifier's flags re-roll and then drop images under `enforce`, with the
reason counted; `score` records them; the gate works with the identity gate off or on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from likeness_ml.tiny_safety import write_tiny_safety_classifier
from renderer.config import RendererSettings
from renderer.identity import FaceScore
from renderer.quality import GatePolicy, JobQuality, Judge, gated_batch
from renderer.safety import SafetyGate, SafetyVerdict


def _seed_of(image: PIL.Image.Image) -> int:
    return int.from_bytes(bytes(image.getpixel((0, 0))), "little")


def generate(seeds: list[int]) -> list[PIL.Image.Image]:
    return [PIL.Image.new("RGB", (8, 8), tuple(seed.to_bytes(3, "little"))) for seed in seeds]


def flags_seeds(unsafe: set[int]) -> Judge:
    """A classifier stand-in for pure gate logic: flags `nsfw` on the images made from these seeds."""

    def judge(images: Sequence[PIL.Image.Image]) -> list[SafetyVerdict]:
        verdicts = []
        for image in images:
            bad = _seed_of(image) in unsafe
            verdicts.append(SafetyVerdict({"nsfw": 0.97 if bad else 0.02}, ("nsfw",) if bad else ()))
        return verdicts

    return judge


def good_face(image: PIL.Image.Image) -> FaceScore:
    return FaceScore(faces=1, distance=0.3)


def test_enforce_re_rolls_flagged_images_and_drops_those_that_stay_flagged() -> None:
    # Seed 1 is flagged; its first re-roll (1 + 100000) too; seed 2 never is.
    judge = flags_seeds({1, 100_001, 200_001})
    policy = GatePolicy("off", max_rerolls=2, max_distance=0.6, safety_mode="enforce")
    result = gated_batch([1, 2], generate, None, policy, False, judge_safety=judge)
    assert [output.seed for output in result.kept] == [2]
    assert result.rerolls == 2
    assert result.dropped == {"unsafe:nsfw": 1}
    assert result.kept[0].safety == SafetyVerdict({"nsfw": 0.02}, ())

    recovers = gated_batch([1, 2], generate, None, policy, False, judge_safety=flags_seeds({1}))
    assert [output.seed for output in recovers.kept] == [100_001, 2]
    assert recovers.dropped == {}


def test_score_keeps_flagged_images_and_counts_their_flags() -> None:
    policy = GatePolicy("score", max_rerolls=2, max_distance=0.6, safety_mode="score")
    result = gated_batch([1, 2], generate, good_face, policy, True, judge_safety=flags_seeds({1}))
    assert [output.seed for output in result.kept] == [1, 2]
    assert result.rerolls == 0
    assert result.flags == {"nsfw": 1}
    assert [output.passed for output in result.kept] == [False, True]
    quality = result.kept[0].as_image_quality()
    assert quality is not None
    assert dict(quality.safety_scores) == pytest.approx({"nsfw": 0.97})
    assert list(quality.safety_flags) == ["nsfw"]
    assert quality.faces == 1


def test_off_never_calls_the_classifier() -> None:
    def explode(images: Sequence[PIL.Image.Image]) -> list[SafetyVerdict]:
        raise AssertionError("called")

    policy = GatePolicy("off", max_rerolls=2, max_distance=0.6, safety_mode="off")
    result = gated_batch([1], generate, None, policy, False, judge_safety=explode)
    assert len(result.kept) == 1
    assert result.kept[0].as_image_quality() is None


def test_the_render_counts_reasons_and_says_why_images_are_missing() -> None:
    policy = GatePolicy("enforce", max_rerolls=1, max_distance=0.6, safety_mode="enforce")

    def far_for_seed_3(image: PIL.Image.Image) -> FaceScore:
        return FaceScore(1, 0.9) if _seed_of(image) in {3, 100_003} else FaceScore(1, 0.3)

    quality = JobQuality("enforce", 4, 1, 0.6, templates=2, safety_mode="enforce")
    quality.add(
        gated_batch(
            [1, 2, 3, 4], generate, far_for_seed_3, policy, True, judge_safety=flags_seeds({1, 100_001})
        )
    )
    record = quality.as_render_quality()
    assert dict(record.drop_reasons) == {"unsafe:nsfw": 1, "identity": 1}
    assert record.safety_gate == record.gate
    assert record.shortfall_reason == (
        "2 of 4 images were dropped after 1 re-rolls each: 1 flagged as inappropriate by the safety "
        "classifier (nsfw); 1 did not show exactly one face within distance 0.6 of the person"
    )


def test_the_gate_scores_with_the_pinned_tiny_classifier(tmp_path: Path) -> None:
    """The real classifier path: a planted ViT that flags everything, one that flags nothing."""
    images = [PIL.Image.fromarray(np.full((64, 64, 3), value, dtype=np.uint8)) for value in (10, 200)]
    flagging = SafetyGate.load(
        write_tiny_safety_classifier(tmp_path / "f", label_bias={"nsfw": 20}), ["nsfw"], 0.5
    )
    assert [verdict.flagged for verdict in flagging.judge(images)] == [("nsfw",), ("nsfw",)]
    clean = SafetyGate.load(
        write_tiny_safety_classifier(tmp_path / "c", label_bias={"normal": 20}), ["nsfw"], 0.5
    )
    assert [verdict.flagged for verdict in clean.judge(images)] == [(), ()]
    with pytest.raises(ValueError, match="no label porn"):
        SafetyGate.load(tmp_path / "c", ["porn"], 0.5)


def _production(**values: object) -> dict[str, object]:
    """Settings production accepts but for the safety gate (as in test_renderer_marking)."""
    return {
        "env": "production",
        "s3_secret_key": "real-s3-secret",
        "vault_auth": "kubernetes",
        "nats_url": "tls://nats:4222",
        "s3_endpoint": "https://s3",
        "vault_addr": "https://vault",
        "jwks_url": "https://idp.example/jwks.json",
        "jwt_issuer": "https://idp.example/",
        "jwt_audience": "likeness-api",
        "audit_pseudonym_secret": "p" * 40,
    } | values


def test_production_needs_a_classifier_unless_the_gate_is_off(tmp_path: Path) -> None:
    production = _production(watermark_key="w" * 40, c2pa_sign=False)
    with pytest.raises(ValueError, match="LIKENESS_SAFETY_MODEL"):
        RendererSettings.model_validate(production)
    unguarded = RendererSettings.model_validate(production | {"safety_gate": "off"})
    assert unguarded.safety_gate_in_effect() == "off"
    chosen = RendererSettings.model_validate(production | {"safety_model": tmp_path})
    assert chosen.safety_gate_in_effect() == "enforce"
    assert RendererSettings.model_validate({}).safety_gate_in_effect() == "off", "development: no model, off"
