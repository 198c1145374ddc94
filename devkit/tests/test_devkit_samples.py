"""The demo sample photos: each is a real, acceptable upload, and they exercise metadata and orientation."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from ingest.faces import FaceAnalyzer, embedding_distance
from ingest.limits import SanitizeLimits, SubjectRules
from ingest.sanitize import sanitize
from ingest.subject_checks import subject_problem
from ingest.templates import FaceTemplate
from ingest.verdicts import Accepted, ReasonCode, Rejected
from likeness_dev.samples import (
    DISTINCT_SAMPLES,
    no_face_photo,
    other_person_photo,
    sample_photos,
    two_faces_photo,
    write_sample_photos,
)

EXPECTED_FORMAT = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    face_analyzer = FaceAnalyzer()
    face_analyzer.warm_up()
    return face_analyzer


@pytest.fixture(scope="module")
def samples() -> list[tuple[str, bytes]]:
    return sample_photos(DISTINCT_SAMPLES)


def test_every_sample_is_accepted_with_default_limits_all_for_one_subject(
    samples: list[tuple[str, bytes]], analyzer: FaceAnalyzer
) -> None:
    limits, rules = SanitizeLimits(), SubjectRules()
    embeddings, stored = [], []
    for name, data in samples:
        result = sanitize(data, limits, analyzer)
        assert isinstance(result, Accepted), (name, result)
        assert min(result.source_width, result.source_height) >= limits.min_side
        # The demo uploads them all for one person: none may be a duplicate of another or "someone else".
        assert subject_problem(result.embedding, result.perceptual_hash, stored, rules) is None, name
        # With room to spare: framings at least twice the duplicate distance apart.
        assert all(
            result.perceptual_hash.distance(t.perceptual_hash or 0) > 2 * rules.max_duplicate_distance
            for t in stored
        ), name
        stored.append(FaceTemplate(result.embedding, result.perceptual_hash.value))
        embeddings.append(result.embedding)
    # One person throughout, as dlib measures it.
    assert max(embedding_distance(embeddings[0], other) for other in embeddings[1:]) < 0.6


def test_samples_past_the_distinct_ones_are_duplicates_of_them(analyzer: FaceAnalyzer) -> None:
    first, repeat = sample_photos(DISTINCT_SAMPLES + 1)[::DISTINCT_SAMPLES]
    results = [sanitize(data, SanitizeLimits(), analyzer) for _, data in (first, repeat)]
    assert all(isinstance(r, Accepted) for r in results)
    original, again = (r for r in results if isinstance(r, Accepted))
    stored = [FaceTemplate(original.embedding, original.perceptual_hash.value)]
    assert (
        subject_problem(again.embedding, again.perceptual_hash, stored, SubjectRules())
        is ReasonCode.DUPLICATE
    )


def test_the_other_person_is_accepted_alone_and_is_someone_else(
    samples: list[tuple[str, bytes]], analyzer: FaceAnalyzer
) -> None:
    other = sanitize(other_person_photo(), SanitizeLimits(), analyzer)
    astronaut = sanitize(samples[0][1], SanitizeLimits(), analyzer)
    assert isinstance(other, Accepted)
    assert isinstance(astronaut, Accepted)
    assert embedding_distance(other.embedding, astronaut.embedding) > 0.7


def test_names_formats_and_default_count(samples: list[tuple[str, bytes]]) -> None:
    assert [name for name, _ in sample_photos()] == [name for name, _ in samples[:6]]
    assert [name for name, _ in samples][:3] == ["astronaut-01.jpg", "astronaut-02.jpg", "astronaut-03.png"]
    for name, data in samples:
        image = Image.open(io.BytesIO(data))
        assert image.format == EXPECTED_FORMAT[name.rsplit(".", 1)[1]], name
    assert {name.rsplit(".", 1)[1] for name, _ in samples} == set(EXPECTED_FORMAT)


def test_samples_carry_metadata_and_orientation_for_ingest_to_handle(
    samples: list[tuple[str, bytes]],
) -> None:
    orientations, with_gps = set(), 0
    for _, data in samples:
        exif = Image.open(io.BytesIO(data)).getexif()
        orientations.add(exif.get(ExifTags.Base.Orientation, 1))
        with_gps += bool(exif.get_ifd(ExifTags.IFD.GPSInfo))
    assert {3, 6, 8} <= orientations
    assert with_gps >= DISTINCT_SAMPLES // 2


def test_more_samples_than_recipes_are_still_distinct_files() -> None:
    many = sample_photos(DISTINCT_SAMPLES + 2)
    assert len({name for name, _ in many}) == len(many)
    assert many[DISTINCT_SAMPLES][1] != many[0][1]
    assert sample_photos(0) == []
    with pytest.raises(ValueError, match="negative"):
        sample_photos(-1)


def test_samples_are_deterministic() -> None:
    assert sample_photos(2) == sample_photos(2)


def test_write_sample_photos(tmp_path: Path) -> None:
    paths = write_sample_photos(tmp_path / "demo", count=3)
    assert [path.name for path in paths] == ["astronaut-01.jpg", "astronaut-02.jpg", "astronaut-03.png"]
    assert [path.read_bytes() for path in paths] == [data for _, data in sample_photos(3)]


def test_no_face_and_two_faces_helpers(analyzer: FaceAnalyzer) -> None:
    limits = SanitizeLimits()
    no_face = sanitize(no_face_photo(), limits, analyzer)
    two_faces = sanitize(two_faces_photo(), limits, analyzer)
    assert isinstance(no_face, Rejected)
    assert no_face.codes == [ReasonCode.NO_FACE]
    assert isinstance(two_faces, Rejected)
    assert two_faces.codes == [ReasonCode.MULTIPLE_FACES]
