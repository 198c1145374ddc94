"""A subject's templates (format), the checks against a subject's photos, and the per-subject lock."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest

from ingest.faces import FaceAnalyzer
from ingest.limits import SanitizeLimits, SubjectRules
from ingest.phash import PhotoHash
from ingest.sanitize import sanitize
from ingest.subject_checks import consensus, subject_problem
from ingest.subject_locks import SubjectLocks
from ingest.templates import FaceTemplate
from ingest.verdicts import Accepted, Reason, ReasonCode
from likeness_dev.samples import other_person_photo, sample_photos

RULES = SubjectRules()


def _template(seed: int, photo_hash: int | None = 0) -> FaceTemplate:
    values = np.random.default_rng(seed).normal(0, 0.1, 128)
    return FaceTemplate(embedding=tuple(float(v) for v in values), perceptual_hash=photo_hash)


# --- the stored template ---------------------------------------------------------------------------------


def test_a_template_round_trips_through_its_bytes() -> None:
    template = _template(1, photo_hash=0xFEDC_BA98_7654_3210)
    data = template.to_bytes()
    assert data[:5] == b"LKFT\x01"
    assert len(data) == 16 + 128 * 4
    back = FaceTemplate.from_bytes(data)
    assert back.perceptual_hash == template.perceptual_hash
    assert back.embedding == pytest.approx(template.embedding, abs=1e-7)  # stored as float32


def test_templates_of_the_first_layout_are_read_without_a_hash() -> None:
    embedding = _template(2).embedding
    back = FaceTemplate.from_bytes(struct.pack("<128f", *embedding))
    assert back.perceptual_hash is None
    assert back.embedding == pytest.approx(embedding, abs=1e-7)


@pytest.mark.parametrize(
    "data", [b"", b"LKFT", b"XXXX\x01" + bytes(523), b"LKFT\x09" + bytes(523), bytes(100)]
)
def test_anything_else_is_not_a_template(data: bytes) -> None:
    with pytest.raises(ValueError, match="template"):
        FaceTemplate.from_bytes(data)


def test_a_template_never_shows_in_a_repr_and_needs_a_full_embedding() -> None:
    template = _template(3, photo_hash=12345)
    assert "12345" not in repr(template)
    assert str(template.embedding[0])[:6] not in repr(template)
    with pytest.raises(ValueError, match="128"):
        FaceTemplate(embedding=(0.1,) * 5, perceptual_hash=1).to_bytes()
    with pytest.raises(ValueError, match="hash"):
        FaceTemplate(embedding=(0.1,) * 128, perceptual_hash=None).to_bytes()


# --- checks against the subject's accepted photos ----------------------------------------------------------


@pytest.fixture(scope="module")
def accepted_samples(analyzer: FaceAnalyzer) -> list[Accepted]:
    results = [sanitize(data, SanitizeLimits(), analyzer) for _, data in sample_photos(4)]
    assert all(isinstance(r, Accepted) for r in results)
    return [r for r in results if isinstance(r, Accepted)]


@pytest.fixture(scope="module")
def stranger(analyzer: FaceAnalyzer) -> Accepted:
    result = sanitize(other_person_photo(), SanitizeLimits(), analyzer)
    assert isinstance(result, Accepted)
    return result


def _stored(result: Accepted) -> FaceTemplate:
    return FaceTemplate(embedding=result.embedding, perceptual_hash=result.perceptual_hash.value)


def test_the_first_photo_of_a_subject_passes(accepted_samples: list[Accepted]) -> None:
    first = accepted_samples[0]
    assert subject_problem(first.embedding, first.perceptual_hash, [], RULES) is None


def test_other_photos_of_the_same_person_pass(accepted_samples: list[Accepted]) -> None:
    stored = [_stored(r) for r in accepted_samples[:3]]
    last = accepted_samples[3]
    assert subject_problem(last.embedding, last.perceptual_hash, stored, RULES) is None


def test_the_same_picture_is_a_duplicate_even_mirrored(accepted_samples: list[Accepted]) -> None:
    stored = [_stored(r) for r in accepted_samples[:2]]
    again = accepted_samples[1]
    assert subject_problem(again.embedding, again.perceptual_hash, stored, RULES) is ReasonCode.DUPLICATE
    mirrored = PhotoHash(value=again.perceptual_hash.mirrored, mirrored=again.perceptual_hash.value)
    assert subject_problem(again.embedding, mirrored, stored, RULES) is ReasonCode.DUPLICATE
    strict = SubjectRules(max_duplicate_distance=0)
    near = PhotoHash(value=again.perceptual_hash.value ^ 1, mirrored=again.perceptual_hash.mirrored ^ 1)
    assert subject_problem(again.embedding, near, stored, strict) is None


def test_someone_else_is_a_different_person(accepted_samples: list[Accepted], stranger: Accepted) -> None:
    stored = [_stored(r) for r in accepted_samples]
    assert (
        subject_problem(stranger.embedding, stranger.perceptual_hash, stored, RULES)
        is ReasonCode.DIFFERENT_PERSON
    )
    # And the other way round: the subject is whoever their photos agree on.
    theirs = [_stored(stranger)]
    first = accepted_samples[0]
    assert (
        subject_problem(first.embedding, first.perceptual_hash, theirs, RULES) is ReasonCode.DIFFERENT_PERSON
    )


def test_one_odd_photo_does_not_move_the_consensus(
    accepted_samples: list[Accepted], stranger: Accepted
) -> None:
    stored = [_stored(r) for r in accepted_samples[:3]] + [_stored(stranger)]
    centre = consensus(stored)
    astronaut = np.asarray(accepted_samples[3].embedding)
    assert float(np.linalg.norm(astronaut - centre)) < 0.6
    last = accepted_samples[3]
    assert subject_problem(last.embedding, last.perceptual_hash, stored, RULES) is None


def test_templates_without_a_hash_still_count_for_identity(
    accepted_samples: list[Accepted], stranger: Accepted
) -> None:
    stored = [FaceTemplate(r.embedding, None) for r in accepted_samples]
    again = accepted_samples[0]
    assert subject_problem(again.embedding, again.perceptual_hash, stored, RULES) is None, (
        "no hash: no duplicate"
    )
    assert (
        subject_problem(stranger.embedding, stranger.perceptual_hash, stored, RULES)
        is ReasonCode.DIFFERENT_PERSON
    )


def test_a_full_subject_takes_no_more_photos() -> None:
    stored = [_template(seed) for seed in range(3)]
    rules = SubjectRules(max_photos=3)
    candidate = _template(9)
    assert subject_problem(candidate.embedding, PhotoHash(1, 1), stored, rules) is ReasonCode.TOO_MANY_PHOTOS
    assert "(3)" in Reason.of(ReasonCode.TOO_MANY_PHOTOS, rules=rules).message


def test_subject_rules_are_validated() -> None:
    for bad in ({"max_photos": 0}, {"max_duplicate_distance": 64}, {"max_identity_distance": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SubjectRules(**bad)  # type: ignore[arg-type]


# --- one subject at a time ------------------------------------------------------------------------------


async def test_the_lock_serialises_one_subject_and_not_others() -> None:
    locks = SubjectLocks()
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []

    async def section(subject: str) -> None:
        async with locks.hold("acme", subject):
            inside.append(subject)
            overlaps.append(tuple(sorted(inside)))
            await asyncio.sleep(0.01)
            inside.remove(subject)

    await asyncio.gather(*(section(s) for s in ["sub_a", "sub_a", "sub_a", "sub_b"]))
    assert all(seen.count("sub_a") <= 1 for seen in overlaps)
    assert any(set(seen) == {"sub_a", "sub_b"} for seen in overlaps), "other subjects run alongside"
    assert len(locks) == 0


async def test_the_lock_is_released_when_the_section_fails() -> None:
    locks = SubjectLocks()
    with pytest.raises(RuntimeError):
        async with locks.hold("acme", "sub_a"):
            raise RuntimeError("boom")
    assert len(locks) == 0
    async with locks.hold("acme", "sub_a"):
        assert len(locks) == 1
