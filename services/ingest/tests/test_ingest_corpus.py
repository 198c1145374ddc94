"""The hostile corpus: every file gets its exact verdict, and every accepted one comes out as pixels only,
whether the file is decoded in this process or, as the service does, in the decoding sandbox.

The corpus is built by the project (likeness_dev.samples.hostile_corpus). Each hostile property is first
shown to be present in the input, as exiftool or the bytes see it, so a corpus that lost its metadata
would fail here instead of proving nothing. The stored, encrypted crops get the same checks after
decryption in test_ingest_service.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from ingest.faces import FaceAnalyzer
from ingest.limits import SanitizeLimits
from ingest.verdicts import Accepted, Rejected, SanitizeResult
from likeness_dev.samples import ACCEPTED, CorpusFile, hostile_corpus_names

Run = Callable[[bytes], SanitizeResult]
Tags = dict[str, Any]

#: Names, in the corpus' order (parametrize ids; the files themselves come from the `corpus` fixture).
NAMES = hostile_corpus_names()

#: For each accepted file, the tags (and values, where given) that prove its hostile property is there.
PRESENT_IN_INPUT: dict[str, dict[str, object]] = {
    "gps-and-camera.jpg": {
        "GPS:GPSLatitude": None,
        "IFD0:Make": "Likeness Sample Camera",
        "File:Comment": "secret comment",
    },
    "edited-with-old-thumbnail.jpg": {"IFD1:ThumbnailImage": None},
    "xmp-and-iptc.jpg": {
        "IPTC:By-line": "Jane Q. Secret",
        "IPTC:City": "Springfield Secret Street",
        "XMP-dc:Creator": "secret-xmp-creator",
    },
    "icc-profile.jpg": {"ICC_Profile:ProfileDescription": None},
    "text-chunks.png": {
        "PNG:Author": "Jane Q. Secret",
        "PNG:Comment": "secret comment",
        "XMP-dc:Creator": "secret-xmp-creator",
        "GPS:GPSLatitude": None,
    },
    "exif-and-xmp.webp": {"GPS:GPSLatitude": None, "XMP-photoshop:City": "Springfield Secret Street"},
    "phone.heic": {"GPS:GPSLatitude": None, "IFD0:Make": "Likeness Sample Camera"},
    "trailing-payload.png": {"ExifTool:Warning": "[minor] Trailer data after PNG IEND chunk"},
    "sideways-with-orientation.jpg": {"IFD0:Orientation": "Rotate 90 CW"},
    "cmyk.jpg": {"File:ColorComponents": 4},
    "sixteen-bit.png": {"PNG:BitDepth": 16},
}


def test_the_corpus_has_every_kind_the_issue_lists(corpus: dict[str, CorpusFile]) -> None:
    verdicts = {entry.verdict for entry in corpus.values()}
    assert {
        ACCEPTED,
        "unsupported_format",
        "corrupt_image",
        "image_too_large",
        "image_too_small",
        "no_face",
        "multiple_faces",
        "face_too_small",
        "too_blurry",
        "too_dark",
        "overexposed",
    } <= verdicts
    accepted = {name for name, entry in corpus.items() if entry.verdict == ACCEPTED}
    assert accepted == set(PRESENT_IN_INPUT) | {"trailing-payload.jpg"}
    animations = [entry for entry in corpus.values() if entry.name.startswith("animation.")]
    assert {Image.open(io.BytesIO(entry.data)).n_frames for entry in animations} == {2}
    assert {entry.name.rsplit(".", 1)[1] for entry in animations} == {"gif", "png", "webp"}


@pytest.mark.parametrize("name", [n for n in NAMES if n in PRESENT_IN_INPUT])
def test_each_hostile_property_is_really_in_the_input(
    name: str, corpus: dict[str, CorpusFile], exiftool: Callable[[bytes], Tags]
) -> None:
    tags = exiftool(corpus[name].data)
    for key, value in PRESENT_IN_INPUT[name].items():
        assert key in tags, (name, key)
        if value is not None:
            assert tags[key] == value, (name, key, tags[key])


def test_the_thumbnail_shows_another_picture_and_the_trailers_follow_the_image(
    corpus: dict[str, CorpusFile],
) -> None:
    photo = corpus["edited-with-old-thumbnail.jpg"].data
    thumbnail_start = photo.index(b"\xff\xd8\xff", 2)  # the second JPEG inside: IFD1's thumbnail
    thumbnail = Image.open(io.BytesIO(photo[thumbnail_start:]))
    assert thumbnail.size == (160, 107), "not the 900x900 photo"
    jpeg = corpus["trailing-payload.jpg"].data
    end_of_image = jpeg.index(b"\xff\xd9")
    assert jpeg.index(b"SECRET TRAILER") > end_of_image
    Image.open(io.BytesIO(jpeg)).load()  # the photo itself is complete


@pytest.fixture(scope="module", params=["in-process", "sandboxed"])
def verdict_of(
    request: pytest.FixtureRequest,
    corpus: dict[str, CorpusFile],
    run_sanitize: Run,
    run_sanitize_sandboxed: Run,
) -> Callable[[str], SanitizeResult]:
    """Each file sanitized once per pipeline: decoded in this process, and as the service does it, in the
    decoding sandbox's workers (`ingest.sandbox`); both must give every file its exact verdict."""
    run = run_sanitize if request.param == "in-process" else run_sanitize_sandboxed
    return functools.cache(lambda name: run(corpus[name].data))


@pytest.mark.parametrize("name", NAMES)
def test_each_file_gets_its_exact_verdict(
    name: str, corpus: dict[str, CorpusFile], verdict_of: Callable[[str], SanitizeResult]
) -> None:
    entry = corpus[name]
    result = verdict_of(name)
    if entry.verdict == ACCEPTED:
        assert isinstance(result, Accepted), (entry.what, result)
    else:
        assert isinstance(result, Rejected), entry.what
        assert [str(code) for code in result.codes] == [entry.verdict], entry.what


@pytest.mark.parametrize("name", [n for n in NAMES if n in PRESENT_IN_INPUT or n == "trailing-payload.jpg"])
def test_each_accepted_file_becomes_an_upright_crop_of_pixels_only(
    name: str,
    verdict_of: Callable[[str], SanitizeResult],
    analyzer: FaceAnalyzer,
    limits: SanitizeLimits,
    assert_clean_crop: Callable[[bytes], None],
) -> None:
    result = verdict_of(name)
    assert isinstance(result, Accepted)
    assert_clean_crop(result.png)
    crop = Image.open(io.BytesIO(result.png))
    assert crop.size == (limits.crop_size, limits.crop_size)
    assert crop.mode == "RGB"
    # Upright and framed: one face in the middle, eyes level (the sideways photo was turned by its tag).
    faces = analyzer.detect(
        crop, min_face_fraction=0.2, min_score=0.0, max_pixels=limits.detection_max_pixels
    )
    assert faces, name
    landmarks = analyzer.describe(crop, faces[0]).landmarks
    (lx, ly), (rx, ry) = landmarks.eye_on_image_left, landmarks.eye_on_image_right
    assert abs(math.degrees(math.atan2(ry - ly, rx - lx))) < 5, name
    assert abs(faces[0].centre[0] / crop.width - 0.5) < 0.1, name
