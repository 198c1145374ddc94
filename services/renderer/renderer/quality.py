"""The output gates: every output is scored against the person (identity) and classified for inappropriate
content (safety); under `enforce` a failing output is re-rolled.

Identity: an output passes with exactly one face at most `max_distance` from the subject's templates (only
the face count when the subject has no template). Safety: an output passes unless the classifier flags it.
Each gate has its own mode. Under `enforce`, the images of a batch failing an enforced gate are rendered
again, together, each with a new seed derived from its own (so a job stays reproducible), up to
`max_rerolls` times; an image that never passes is dropped, its reason (`identity`, `unsafe:<label>`)
counted on the render, and the job says why it delivers fewer images than asked. `score` records the
scores and keeps everything; `off` skips the gate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import PIL.Image

from likeness.v1 import renderer_pb2
from renderer.config import QualityGate
from renderer.identity import FaceScore
from renderer.safety import UNSAFE_PREFIX, SafetyVerdict

_GATES: dict[QualityGate, renderer_pb2.QualityGate.ValueType] = {
    "off": renderer_pb2.QUALITY_GATE_OFF,
    "score": renderer_pb2.QUALITY_GATE_SCORE,
    "enforce": renderer_pb2.QUALITY_GATE_ENFORCE,
}
IDENTITY_REASON = "identity"

#: Seeds of re-rolls: far from the job's own seeds (base + style * 1000 + image, at most 16 styles).
REROLL_STRIDE = 100_000
SEED_LIMIT = 2**63

Judge = Callable[[Sequence[PIL.Image.Image]], list[SafetyVerdict]]


def reroll_seed(seed: int, attempt: int) -> int:
    return (seed + attempt * REROLL_STRIDE) % SEED_LIMIT


@dataclass
class Output:
    """One image with the seed that made it, its scores and the re-rolls it took."""

    seed: int
    image: PIL.Image.Image
    score: FaceScore | None
    rerolls: int
    passed: bool
    safety: SafetyVerdict | None = None
    #: Why it fails a gate ("" when it passes them all).
    reason: str = ""

    def as_image_quality(self) -> renderer_pb2.ImageQuality | None:
        """The gates' view of this image for its record (None when both gates were off)."""
        if self.score is None and self.safety is None:
            return None
        quality = renderer_pb2.ImageQuality(rerolls=self.rerolls, passed=self.passed)
        if self.score is not None:
            quality.faces = self.score.faces
            if self.score.distance is not None:
                quality.identity_distance = round(self.score.distance, 4)
        if self.safety is not None:
            quality.safety_scores.update(self.safety.scores)
            quality.safety_flags.extend(self.safety.flagged)
        return quality


@dataclass
class BatchResult:
    kept: list[Output]
    rerolls: int
    failures: int
    #: Reasons of the images dropped (enforce).
    dropped: Counter[str] = field(default_factory=Counter)
    #: Labels the classifier flagged among the delivered images (score).
    flags: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class GatePolicy:
    mode: QualityGate
    max_rerolls: int
    max_distance: float
    safety_mode: QualityGate = "off"

    def passes(self, score: FaceScore | None, have_templates: bool) -> bool:
        if self.mode == "off" or score is None:
            return True
        return score.passes(self.max_distance, need_distance=have_templates)

    def judge(self, output: Output, have_templates: bool) -> None:
        """Sets output.passed and output.reason from its scores (the safety flag is named first)."""
        reasons = []
        if self.safety_mode != "off" and output.safety is not None and output.safety.flagged:
            reasons.append(output.safety.reason)
        if not self.passes(output.score, have_templates):
            reasons.append(IDENTITY_REASON)
        output.passed = not reasons
        output.reason = reasons[0] if reasons else ""

    def must_reroll(self, output: Output, have_templates: bool) -> bool:
        """Whether an enforced gate rejects the output."""
        unsafe = output.safety is not None and bool(output.safety.flagged)
        return (self.safety_mode == "enforce" and unsafe) or (
            self.mode == "enforce" and not self.passes(output.score, have_templates)
        )


def gated_batch(
    seeds: Sequence[int],
    generate: Callable[[list[int]], list[PIL.Image.Image]],
    score: Callable[[PIL.Image.Image], FaceScore] | None,
    policy: GatePolicy,
    have_templates: bool,
    cancelled: Callable[[], bool] = lambda: False,
    judge_safety: Judge | None = None,
) -> BatchResult:
    """Renders one image per seed (one batched call), scores them and re-rolls failures as the policy says.

    generate: seeds -> images in seed order. score: None when the identity gate is off. judge_safety: the
    safety classifier over a batch (None when the safety gate is off).
    """
    if policy.mode == "off":
        score = None
    if policy.safety_mode == "off":
        judge_safety = None
    images = generate(list(seeds))
    outputs = [Output(seed, image, None, 0, True) for seed, image in zip(seeds, images, strict=True)]
    if score is None and judge_safety is None:
        return BatchResult(outputs, 0, 0)

    def assess(batch: list[Output]) -> None:
        verdicts = judge_safety([o.image for o in batch]) if judge_safety is not None else None
        for index, output in enumerate(batch):
            output.score = score(output.image) if score is not None else None
            output.safety = verdicts[index] if verdicts is not None else None
            policy.judge(output, have_templates)

    assess(outputs)
    rerolls = 0
    for attempt in range(1, policy.max_rerolls + 1):
        failing = [i for i, output in enumerate(outputs) if policy.must_reroll(output, have_templates)]
        if not failing or cancelled():
            break
        new_seeds = [reroll_seed(seeds[index], attempt) for index in failing]
        redone = []
        for index, seed, image in zip(failing, new_seeds, generate(new_seeds), strict=True):
            output = outputs[index]
            output.seed, output.image = seed, image
            output.rerolls += 1
            rerolls += 1
            redone.append(output)
        assess(redone)
    kept = [output for output in outputs if not policy.must_reroll(output, have_templates)]
    dropped = Counter(output.reason for output in outputs if policy.must_reroll(output, have_templates))
    flags = Counter(label for output in kept if output.safety is not None for label in output.safety.flagged)
    failures = sum(1 for output in outputs if not output.passed)
    return BatchResult(kept, rerolls, failures, dropped, flags)


@dataclass
class JobQuality:
    """What the gates did over a whole job (goes on the render record)."""

    mode: QualityGate
    requested: int
    max_rerolls: int
    max_distance: float
    templates: int = 0
    delivered: int = 0
    rerolls: int = 0
    failures: int = 0
    distances: list[float] = field(default_factory=list)
    safety_mode: QualityGate = "off"
    dropped: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)

    def add(self, batch: BatchResult) -> None:
        self.delivered += len(batch.kept)
        self.rerolls += batch.rerolls
        self.failures += batch.failures
        self.dropped.update(batch.dropped)
        self.flags.update(batch.flags)
        self.distances.extend(
            output.score.distance
            for output in batch.kept
            if output.score is not None and output.score.distance is not None
        )

    def shortfall_reason(self) -> str:
        """Why the job delivers fewer images than asked ("" when it does not)."""
        missing = self.requested - self.delivered
        if missing <= 0:
            return ""
        bar = (
            f"exactly one face within distance {self.max_distance:g} of the person"
            if self.templates
            else "exactly one face"
        )
        unsafe = {
            r.removeprefix(UNSAFE_PREFIX): n for r, n in self.dropped.items() if r.startswith(UNSAFE_PREFIX)
        }
        if not unsafe:
            return (
                f"{missing} of {self.requested} images were dropped: they did not show {bar} "
                f"after {self.max_rerolls} re-rolls each"
            )
        parts = [
            f"{sum(unsafe.values())} flagged as inappropriate by the safety classifier "
            f"({', '.join(sorted(unsafe))})"
        ]
        if self.dropped[IDENTITY_REASON]:
            parts.append(f"{self.dropped[IDENTITY_REASON]} did not show {bar}")
        return (
            f"{missing} of {self.requested} images were dropped after {self.max_rerolls} re-rolls each: "
            + "; ".join(parts)
        )

    def note(self) -> str:
        """A remark on how far the check could go ("" when nothing to say)."""
        if self.mode != "off" and self.templates == 0:
            return "the subject has no face template: only the face count was checked"
        return ""

    def as_started(self) -> renderer_pb2.RenderQuality:
        """The gates a running render is checked by (its counts come when it ends)."""
        return renderer_pb2.RenderQuality(
            gate=_GATES[self.mode],
            safety_gate=_GATES[self.safety_mode],
            images_requested=self.requested,
            templates=self.templates,
        )

    def as_render_quality(self) -> renderer_pb2.RenderQuality:
        quality = renderer_pb2.RenderQuality(
            gate=_GATES[self.mode],
            images_requested=self.requested,
            rerolls=self.rerolls,
            failures=self.failures,
            templates=self.templates,
            shortfall_reason=self.shortfall_reason(),
            note=self.note(),
            safety_gate=_GATES[self.safety_mode],
        )
        quality.drop_reasons.update(self.dropped)
        quality.safety_flags.update(self.flags)
        return quality
