"""The quality gate: identity scores with dlib, re-rolls with new seeds, and saying why images are missing."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest
import skimage.data

from likeness_dev.samples import astronaut
from renderer.identity import FaceScore, FaceScorer, parse_templates
from renderer.quality import GatePolicy, JobQuality, gated_batch, reroll_seed


class FakeRenderer:
    """Images whose only content is their seed; seeds in `good` render as a passing face."""

    def __init__(self, good: set[int]) -> None:
        self.good = good
        self.calls: list[list[int]] = []

    def generate(self, seeds: list[int]) -> list[PIL.Image.Image]:
        self.calls.append(list(seeds))
        return [PIL.Image.new("RGB", (8, 8), tuple(seed.to_bytes(3, "little"))) for seed in seeds]

    def score(self, image: PIL.Image.Image) -> FaceScore:
        seed = int.from_bytes(bytes(image.getpixel((0, 0))), "little")  # type: ignore[arg-type]
        return FaceScore(faces=1, distance=0.3) if seed in self.good else FaceScore(faces=1, distance=0.9)


ENFORCE = GatePolicy(mode="enforce", max_rerolls=2, max_distance=0.6)


def test_enforce_re_rolls_failures_in_one_batch_with_new_seeds() -> None:
    fake = FakeRenderer(good={1, 3, reroll_seed(2, 1)})
    result = gated_batch([1, 2, 3], fake.generate, fake.score, ENFORCE, have_templates=True)
    assert fake.calls == [[1, 2, 3], [reroll_seed(2, 1)]]
    assert [output.seed for output in result.kept] == [1, reroll_seed(2, 1), 3]
    assert [output.rerolls for output in result.kept] == [0, 1, 0]
    assert result.rerolls == 1
    assert result.failures == 0


def test_enforce_drops_what_never_passes_and_counts_it() -> None:
    fake = FakeRenderer(good={1})
    result = gated_batch([1, 2], fake.generate, fake.score, ENFORCE, have_templates=True)
    assert fake.calls == [[1, 2], [reroll_seed(2, 1)], [reroll_seed(2, 2)]]
    assert [output.seed for output in result.kept] == [1]
    assert result.rerolls == 2
    assert result.failures == 1


def test_re_roll_seeds_are_reproducible_and_never_collide_with_a_jobs_own_seeds() -> None:
    job_seeds = {1234 + style * 1000 + image for style in range(16) for image in range(8)}
    rerolled = {reroll_seed(seed, attempt) for seed in job_seeds for attempt in (1, 2, 3)}
    assert not job_seeds & rerolled
    assert reroll_seed(5, 1) == reroll_seed(5, 1)


def test_score_mode_keeps_everything_and_off_scores_nothing() -> None:
    fake = FakeRenderer(good={1})
    scored = gated_batch([1, 2], fake.generate, fake.score, GatePolicy("score", 2, 0.6), True)
    assert [output.passed for output in scored.kept] == [True, False]
    assert scored.failures == 1
    assert scored.rerolls == 0
    off = gated_batch([1, 2], fake.generate, None, GatePolicy("off", 2, 0.6), True)
    assert [output.score for output in off.kept] == [None, None]
    assert len(fake.calls) == 2


def test_without_templates_only_the_face_count_decides() -> None:
    policy = ENFORCE
    assert policy.passes(FaceScore(faces=1, distance=None), have_templates=False)
    assert not policy.passes(FaceScore(faces=1, distance=None), have_templates=True)
    assert not policy.passes(FaceScore(faces=0, distance=None), have_templates=False)
    assert not policy.passes(FaceScore(faces=2, distance=None), have_templates=False)


def test_a_job_short_of_images_says_why() -> None:
    quality = JobQuality("enforce", requested=8, max_rerolls=2, max_distance=0.6, templates=3)
    fake = FakeRenderer(good=set(range(6)))
    quality.add(gated_batch(list(range(8)), fake.generate, fake.score, ENFORCE, have_templates=True))
    assert quality.delivered == 6
    assert quality.failures == 2
    assert quality.rerolls == 4
    assert quality.shortfall_reason() == (
        "2 of 8 images were dropped: they did not show exactly one face within distance 0.6 of the "
        "person after 2 re-rolls each"
    )
    complete = JobQuality("score", requested=2, max_rerolls=2, max_distance=0.6)
    complete.delivered = 2
    assert complete.shortfall_reason() == ""
    assert "no face template" in complete.note()


# --- dlib on real faces ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scorer() -> FaceScorer:
    return FaceScorer(min_detection_score=0.3)


@pytest.fixture(scope="module")
def person() -> PIL.Image.Image:
    return astronaut()  # 512 x 512, face about 90 px across


def test_the_same_person_scores_close_and_other_content_has_no_face(
    scorer: FaceScorer, person: PIL.Image.Image
) -> None:
    (template,) = scorer.embed_faces(person)
    templates = parse_templates([np.asarray(template, dtype=np.float32).tobytes()])
    out = io.BytesIO()
    person.resize((448, 448)).save(out, format="JPEG", quality=80)
    again = scorer.score(PIL.Image.open(io.BytesIO(out.getvalue())), templates)
    assert again.faces == 1
    assert again.distance is not None
    assert again.distance < 0.3
    assert again.passes(0.6, need_distance=True)
    assert scorer.score(PIL.Image.fromarray(skimage.data.coffee()), templates) == FaceScore(0, None)
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert scorer.score(PIL.Image.fromarray(noise), templates).faces == 0


def test_two_people_in_one_image_fail(scorer: FaceScorer, person: PIL.Image.Image) -> None:
    pair = PIL.Image.new("RGB", (1024, 512))
    pair.paste(person, (0, 0))
    pair.paste(person, (512, 0))
    score = scorer.score(pair, parse_templates([]))
    assert score == FaceScore(faces=2, distance=None)
    assert not score.passes(0.6, need_distance=False)


def test_both_of_ingests_template_layouts_are_read_and_others_skipped() -> None:
    embedding = np.arange(128, dtype="<f4")
    version_0 = embedding.tobytes()
    version_1 = b"LKFT" + bytes([1, 0, 0, 0]) + (123).to_bytes(8, "little") + embedding.tobytes()
    future = b"LKFT" + bytes([9, 0, 0, 0]) + bytes(8) + embedding.tobytes()
    templates = parse_templates([version_0, version_1, future, bytes(100)])
    assert templates.shape == (2, 128)
    assert np.array_equal(templates[0], embedding)
    assert np.array_equal(templates[1], embedding)
    assert parse_templates([]).shape == (0, 128)
