"""The quality gate: every output is scored against the person, and in `enforce` mode re-rolled.

An output passes with exactly one face at most `max_distance` from the subject's templates (only the face
count when the subject has no template). In `enforce` mode the failing images of a batch are rendered
again, together, each with a new seed derived from its own (so a job stays reproducible), up to
`max_rerolls` times; an image that never passes is dropped and counted as a failure, and the job says why
it delivers fewer images than asked. `score` records the scores and keeps everything; `off` skips faces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import PIL.Image

from likeness.v1 import renderer_pb2
from renderer.config import QualityGate
from renderer.identity import FaceScore

_GATES: dict[QualityGate, renderer_pb2.QualityGate.ValueType] = {
    "off": renderer_pb2.QUALITY_GATE_OFF,
    "score": renderer_pb2.QUALITY_GATE_SCORE,
    "enforce": renderer_pb2.QUALITY_GATE_ENFORCE,
}

#: Seeds of re-rolls: far from the job's own seeds (base + style * 1000 + image, at most 16 styles).
REROLL_STRIDE = 100_000
SEED_LIMIT = 2**63


def reroll_seed(seed: int, attempt: int) -> int:
    return (seed + attempt * REROLL_STRIDE) % SEED_LIMIT


@dataclass
class Output:
    """One delivered image with the seed that made it, its score and the re-rolls it took."""

    seed: int
    image: PIL.Image.Image
    score: FaceScore | None
    rerolls: int
    passed: bool

    def as_image_quality(self) -> renderer_pb2.ImageQuality | None:
        """The gate's view of this image for its record (None when the gate was off)."""
        if self.score is None:
            return None
        distance = self.score.distance
        return renderer_pb2.ImageQuality(
            faces=self.score.faces,
            identity_distance=None if distance is None else round(distance, 4),
            rerolls=self.rerolls,
            passed=self.passed,
        )


@dataclass
class BatchResult:
    kept: list[Output]
    rerolls: int
    failures: int


@dataclass(frozen=True)
class GatePolicy:
    mode: QualityGate
    max_rerolls: int
    max_distance: float

    def passes(self, score: FaceScore | None, have_templates: bool) -> bool:
        if self.mode == "off" or score is None:
            return True
        return score.passes(self.max_distance, need_distance=have_templates)


def gated_batch(
    seeds: Sequence[int],
    generate: Callable[[list[int]], list[PIL.Image.Image]],
    score: Callable[[PIL.Image.Image], FaceScore] | None,
    policy: GatePolicy,
    have_templates: bool,
    cancelled: Callable[[], bool] = lambda: False,
) -> BatchResult:
    """Renders one image per seed (one batched call), scores them and re-rolls failures as the policy says.

    generate: seeds -> images in seed order. score: None when the gate is off.
    """
    images = generate(list(seeds))
    outputs = [Output(seed, image, None, 0, True) for seed, image in zip(seeds, images, strict=True)]
    if policy.mode == "off" or score is None:
        return BatchResult(outputs, 0, 0)
    for output in outputs:
        output.score = score(output.image)
        output.passed = policy.passes(output.score, have_templates)
    rerolls = 0
    if policy.mode == "enforce":
        for attempt in range(1, policy.max_rerolls + 1):
            failing = [index for index, output in enumerate(outputs) if not output.passed]
            if not failing or cancelled():
                break
            new_seeds = [reroll_seed(seeds[index], attempt) for index in failing]
            for index, seed, image in zip(failing, new_seeds, generate(new_seeds), strict=True):
                output = outputs[index]
                output.seed, output.image = seed, image
                output.score = score(image)
                output.passed = policy.passes(output.score, have_templates)
                output.rerolls += 1
                rerolls += 1
        kept = [output for output in outputs if output.passed]
        return BatchResult(kept, rerolls, len(outputs) - len(kept))
    return BatchResult(outputs, 0, sum(1 for output in outputs if not output.passed))


@dataclass
class JobQuality:
    """What the gate did over a whole job (goes on the render record)."""

    mode: QualityGate
    requested: int
    max_rerolls: int
    max_distance: float
    templates: int = 0
    delivered: int = 0
    rerolls: int = 0
    failures: int = 0
    distances: list[float] = field(default_factory=list)

    def add(self, batch: BatchResult) -> None:
        self.delivered += len(batch.kept)
        self.rerolls += batch.rerolls
        self.failures += batch.failures
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
        return (
            f"{missing} of {self.requested} images were dropped: they did not show {bar} "
            f"after {self.max_rerolls} re-rolls each"
        )

    def note(self) -> str:
        """A remark on how far the check could go ("" when nothing to say)."""
        if self.mode != "off" and self.templates == 0:
            return "the subject has no face template: only the face count was checked"
        return ""

    def as_render_quality(self) -> renderer_pb2.RenderQuality:
        return renderer_pb2.RenderQuality(
            gate=_GATES[self.mode],
            images_requested=self.requested,
            rerolls=self.rerolls,
            failures=self.failures,
            templates=self.templates,
            shortfall_reason=self.shortfall_reason(),
            note=self.note(),
        )
