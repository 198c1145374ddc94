"""sanitize(): every rejection code from a crafted input, clean PNG output, faces and embeddings."""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageEnhance, ImageFilter

from ingest.faces import FaceAnalyzer, embedding_distance
from ingest.limits import SanitizeLimits
from ingest.sanitize import sanitize
from ingest.verdicts import MESSAGES, Accepted, Reason, ReasonCode, Rejected, SanitizeResult
from likeness_dev.samples import astronaut, fake_exif, no_face_photo, sample_photos, two_faces_photo

Run = Callable[[bytes], SanitizeResult]
Encode = Callable[..., bytes]


def _accepted(result: SanitizeResult) -> Accepted:
    assert isinstance(result, Accepted), result
    return result


def _codes(result: SanitizeResult) -> list[ReasonCode]:
    assert isinstance(result, Rejected), result
    return result.codes


def _pillow_bytes(image_format: str, size: tuple[int, int] = (600, 600)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 80, 40)).save(buffer, format=image_format)
    return buffer.getvalue()


# --- one crafted input per rejection code ----------------------------------------------------------


def test_file_too_large(run_sanitize: Run, limits: SanitizeLimits, portrait_jpeg: bytes) -> None:
    oversized = portrait_jpeg + b"\0" * (limits.max_bytes - len(portrait_jpeg) + 1)
    assert _codes(run_sanitize(oversized)) == [ReasonCode.FILE_TOO_LARGE]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_pillow_bytes("GIF"), id="gif"),
        pytest.param(_pillow_bytes("TIFF"), id="tiff"),
        pytest.param(_pillow_bytes("BMP"), id="bmp"),
        pytest.param(_pillow_bytes("AVIF"), id="avif"),
        pytest.param(b'<svg xmlns="http://www.w3.org/2000/svg" width="600" height="600"></svg>', id="svg"),
        pytest.param(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n", id="pdf"),
        pytest.param(b"%!PS-Adobe-3.0 EPSF-3.0\n", id="eps"),
        pytest.param(np.random.default_rng(1).bytes(4096), id="random bytes"),
        pytest.param(b"", id="empty"),
    ],
)
def test_unsupported_format(run_sanitize: Run, data: bytes) -> None:
    assert _codes(run_sanitize(data)) == [ReasonCode.UNSUPPORTED_FORMAT]


def test_corrupt_image(run_sanitize: Run, portrait_jpeg: bytes) -> None:
    assert _codes(run_sanitize(portrait_jpeg[: len(portrait_jpeg) // 2])) == [ReasonCode.CORRUPT_IMAGE]


def test_image_too_large(run_sanitize: Run, png_with_header: Callable[[int, int], bytes]) -> None:
    assert _codes(run_sanitize(png_with_header(20000, 20000))) == [ReasonCode.IMAGE_TOO_LARGE]


def test_image_too_small(run_sanitize: Run, encode: Encode) -> None:
    assert _codes(run_sanitize(encode(astronaut().resize((200, 200))))) == [ReasonCode.IMAGE_TOO_SMALL]


def test_no_face(run_sanitize: Run) -> None:
    assert _codes(run_sanitize(no_face_photo())) == [ReasonCode.NO_FACE]


def test_multiple_faces(run_sanitize: Run) -> None:
    assert _codes(run_sanitize(two_faces_photo())) == [ReasonCode.MULTIPLE_FACES]


def test_face_too_small(run_sanitize: Run, encode: Encode) -> None:
    # The 512 px portrait in the middle of a 1600 px wall: the face is about 6 % of the shorter side.
    wall = Image.new("RGB", (1600, 1600), (200, 200, 205))
    wall.paste(astronaut(), (544, 544))
    assert _codes(run_sanitize(encode(wall))) == [ReasonCode.FACE_TOO_SMALL]


def test_a_face_turned_sideways_without_an_orientation_tag_is_not_found(
    run_sanitize: Run, encode: Encode
) -> None:
    # The counterpart of the orientation test below: without the tag, the same pixels have no usable face.
    sideways = astronaut().resize((900, 900)).transpose(Image.Transpose.ROTATE_90)
    assert _codes(run_sanitize(encode(sideways))) == [ReasonCode.NO_FACE]


def test_rejections_speak_to_a_person(limits: SanitizeLimits) -> None:
    assert set(MESSAGES) == set(ReasonCode)
    for code in ReasonCode:
        message = Reason.of(code, limits).message
        assert message[0].isupper()
        assert message.endswith(".")
        assert "{" not in message
    assert "10 MB" in Reason.of(ReasonCode.FILE_TOO_LARGE, SanitizeLimits(max_bytes=10 * 1024 * 1024)).message
    assert "512 pixels" in Reason.of(ReasonCode.IMAGE_TOO_SMALL, SanitizeLimits(min_side=512)).message
    assert Reason.of(ReasonCode.NO_FACE).message == (
        "We couldn't find a face in this photo. Use a photo where your face is clearly visible."
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.sampled_from(
        [
            b"",
            b"\xff\xd8\xff",
            b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00",
            b"\x89PNG\r\n\x1a\n",
            b"RIFF\0\0\0\0WEBPVP8 ",
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
        ]
    ),
    body=st.binary(max_size=3000),
)
def test_arbitrary_bytes_never_raise(run_sanitize: Run, prefix: bytes, body: bytes) -> None:
    assert isinstance(run_sanitize(prefix + body), Rejected)


def test_damaged_photos_never_raise(run_sanitize: Run, portrait_jpeg: bytes) -> None:
    rng = np.random.default_rng(11)
    for _ in range(5):
        damaged = bytearray(portrait_jpeg)
        for position in rng.integers(2, len(damaged), size=20):
            damaged[position] = int(rng.integers(0, 256))
        assert isinstance(run_sanitize(bytes(damaged)), Accepted | Rejected)


# --- accepted photos ---------------------------------------------------------------------------------


def test_accepted_crop_is_a_square_png_of_crop_size(
    run_sanitize: Run, limits: SanitizeLimits, portrait_jpeg: bytes
) -> None:
    result = _accepted(run_sanitize(portrait_jpeg))
    crop = Image.open(io.BytesIO(result.png))
    assert crop.format == "PNG"
    assert crop.mode == "RGB"
    assert crop.size == (limits.crop_size, limits.crop_size) == (result.width, result.height)
    assert (result.source_format, result.source_width, result.source_height) == ("JPEG", 1024, 1024)
    assert 0.15 < result.face_fraction < 0.25
    assert result.face_score > 0
    assert "embedding" not in repr(result)
    assert "png" not in repr(result)


def test_metadata_and_trailing_bytes_do_not_survive(
    run_sanitize: Run,
    portrait: Image.Image,
    encode: Encode,
    png_chunk_types: Callable[[bytes], list[str]],
    swapped_icc_profile: bytes,
) -> None:
    upload = (
        encode(
            portrait,
            "JPEG",
            exif=fake_exif(),
            icc_profile=swapped_icc_profile,
            comment=b"secret comment",
            xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret xmp</x:xmpmeta>',
        )
        + b"SECRET TRAILER after the end of image"
        + encode(portrait.resize((300, 300)))
    )
    source = Image.open(io.BytesIO(upload))
    assert {"exif", "icc_profile", "comment", "xmp"} <= set(source.info)

    result = _accepted(run_sanitize(upload))
    chunks = png_chunk_types(result.png)
    assert chunks[0] == "IHDR"
    assert chunks[-1] == "IEND"
    assert set(chunks[1:-1]) == {"IDAT"}
    crop = Image.open(io.BytesIO(result.png))
    assert set(crop.info) <= {"dpi", "gamma"}  # nothing that came from the upload
    assert len(crop.getexif()) == 0
    for secret in (
        b"secret",
        b"SECRET",
        b"Likeness Sample Camera",
        b"GPS",
        b"Exif",
        b"likeness test profile",
    ):
        assert secret not in result.png


def test_exif_orientation_is_applied_before_faces_are_searched(
    run_sanitize: Run, analyzer: FaceAnalyzer, limits: SanitizeLimits, encode: Encode
) -> None:
    upright = astronaut().crop((0, 64, 512, 448)).resize((1024, 768))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a phone held sideways writes, tag 6
    assert stored.size == (768, 1024)
    result = _accepted(run_sanitize(encode(stored, exif=fake_exif(orientation=6))))
    assert (result.source_width, result.source_height) == (1024, 768)

    crop = Image.open(io.BytesIO(result.png)).convert("RGB")
    faces = analyzer.detect(
        crop, min_face_fraction=0.2, min_score=0.0, max_pixels=limits.detection_max_pixels
    )
    assert faces, "the face in the crop must be upright to be found"
    left, right = (lambda lm: (lm.eye_on_image_left, lm.eye_on_image_right))(
        analyzer.describe(crop, faces[0]).landmarks
    )
    assert abs(math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))) < 3


def test_tilted_head_is_levelled_and_framed(
    run_sanitize: Run, analyzer: FaceAnalyzer, limits: SanitizeLimits, encode: Encode
) -> None:
    tilted = (
        astronaut().rotate(-12, resample=Image.Resampling.BICUBIC).crop((40, 0, 472, 432)).resize((864, 864))
    )
    result = _accepted(run_sanitize(encode(tilted)))
    crop = Image.open(io.BytesIO(result.png)).convert("RGB")
    face = analyzer.detect(
        crop, min_face_fraction=0.2, min_score=0.0, max_pixels=limits.detection_max_pixels
    )[0]
    landmarks = analyzer.describe(crop, face).landmarks
    (lx, ly), (rx, ry) = landmarks.eye_on_image_left, landmarks.eye_on_image_right
    assert abs(math.degrees(math.atan2(ry - ly, rx - lx))) < 3
    # Head and shoulders: the face about 40-50 % of the side, horizontally centred, eyes above the middle.
    assert 0.35 < face.side / crop.width < 0.6
    assert abs(face.centre[0] / crop.width - 0.5) < 0.08
    assert 0.25 < (ly + ry) / 2 / crop.height < 0.5


@pytest.mark.parametrize("mode", ["CMYK", "L"])
def test_cmyk_and_greyscale_photos_are_accepted(
    run_sanitize: Run, portrait: Image.Image, encode: Encode, mode: str
) -> None:
    result = _accepted(run_sanitize(encode(portrait.convert(mode), "JPEG")))
    assert Image.open(io.BytesIO(result.png)).mode == "RGB"


def test_sixteen_bit_photos_are_accepted(
    run_sanitize: Run,
    encode: Encode,
    png_rgb16: Callable[[np.ndarray], bytes],  # type: ignore[type-arg]
) -> None:
    eight_bit = np.asarray(astronaut().resize((640, 640)), dtype=np.uint16)
    _accepted(run_sanitize(png_rgb16(eight_bit * 257)))
    grey16 = Image.fromarray(np.asarray(astronaut().convert("L").resize((640, 640)), dtype=np.uint16) * 257)
    assert grey16.mode == "I;16"
    _accepted(run_sanitize(encode(grey16, "PNG")))


def test_heic_is_accepted(run_sanitize: Run, portrait: Image.Image, encode: Encode) -> None:
    result = _accepted(run_sanitize(encode(portrait, "HEIF", quality=80, exif=fake_exif())))
    assert result.source_format == "HEIF"
    assert b"Likeness Sample Camera" not in result.png


def test_embeddings_identify_the_same_person(run_sanitize: Run) -> None:
    first, second, mirrored = (_accepted(run_sanitize(data)) for _, data in sample_photos(3))
    assert len(first.embedding) == 128
    assert all(math.isfinite(value) for value in first.embedding)
    assert 0 < embedding_distance(first.embedding, second.embedding) < 0.6
    assert embedding_distance(first.embedding, mirrored.embedding) < 0.6


def test_one_analyzer_can_serve_threads(
    analyzer: FaceAnalyzer, limits: SanitizeLimits, portrait_jpeg: bytes
) -> None:
    expected = _accepted(sanitize(portrait_jpeg, limits, analyzer))
    results: list[SanitizeResult] = []

    def work() -> None:
        results.append(sanitize(portrait_jpeg, limits, analyzer))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [(_accepted(r).embedding, _accepted(r).png) for r in results] == [
        (expected.embedding, expected.png)
    ] * 3


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        SanitizeLimits(max_bytes=0)
    with pytest.raises(ValueError, match="min_face_fraction"):
        SanitizeLimits(min_face_fraction=1.5)
    with pytest.raises(ValueError, match="min_side"):
        SanitizeLimits(min_side=10_000, max_pixels=1_000_000)


# --- quality checks and scores ----------------------------------------------------------------------


def test_accepted_photos_carry_their_quality_scores(run_sanitize: Run, portrait_jpeg: bytes) -> None:
    result = _accepted(run_sanitize(portrait_jpeg))
    assert set(result.scores) == {
        "face_score",
        "face_fraction",
        "sharpness",
        "face_brightness",
        "face_clipped",
    }
    assert result.scores["sharpness"] > 0.05
    assert 0.5 < result.scores["face_brightness"] < 0.8
    assert result.scores["face_clipped"] < 0.05
    assert result.scores["face_fraction"] == round(result.face_fraction, 3)


def test_every_quality_problem_is_reported_at_once(
    run_sanitize: Run, portrait: Image.Image, encode: Encode
) -> None:
    blurred_and_washed_out = ImageEnhance.Brightness(portrait.filter(ImageFilter.GaussianBlur(2.5))).enhance(
        1.6
    )
    result = run_sanitize(encode(blurred_and_washed_out))
    assert _codes(result) == [ReasonCode.TOO_BLURRY, ReasonCode.OVEREXPOSED]
    assert isinstance(result, Rejected)
    assert result.scores["sharpness"] < 0.03
    assert result.scores["face_clipped"] > 0.3
    # (A dark photo reads as sharp whatever its focus: 8-bit steps are large against its little contrast.
    # It is refused as too dark; once retaken in good light, its focus is measured properly.)


def test_quality_limits_are_the_configured_ones(
    portrait: Image.Image, encode: Encode, analyzer: FaceAnalyzer
) -> None:
    softened = encode(portrait.filter(ImageFilter.GaussianBlur(1.2)))
    assert _codes(sanitize(softened, SanitizeLimits(), analyzer)) == [ReasonCode.TOO_BLURRY]
    assert isinstance(sanitize(softened, SanitizeLimits(min_sharpness=0.01), analyzer), Accepted)


def test_a_large_jpeg_with_a_small_face_is_decoded_again_at_full_size(
    analyzer: FaceAnalyzer, encode: Encode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoded at 1/2 for detection, the face is too small for a full-quality crop: the photo is decoded
    again at full size, and the face box comes back in full-size coordinates."""
    import ingest.sanitize as pipeline

    photo = Image.new("RGB", (4000, 3000), (70, 90, 120))
    photo.paste(astronaut().resize((2048, 2048), Image.Resampling.LANCZOS), (1200, 300))
    decodes: list[float] = []
    real_decode = pipeline.decode_image

    def counting_decode(*args: object, **kwargs: object) -> object:
        decoded = real_decode(*args, **kwargs)  # type: ignore[arg-type]
        decodes.append(decoded.scale)
        return decoded

    monkeypatch.setattr(pipeline, "decode_image", counting_decode)
    result = _accepted(sanitize(encode(photo), SanitizeLimits(min_sharpness=0.0), analyzer))
    assert decodes == [0.5, 1.0]
    assert (result.source_width, result.source_height) == (4000, 3000)
    # The astronaut's face is at about (175-266, 76-167) of 512 px: x4 and offset by the paste.
    centre_x, centre_y = result.face_box.centre
    assert abs(centre_x - (1200 + 220 * 4)) < 60
    assert abs(centre_y - (300 + 121 * 4)) < 60
    assert 0.1 < result.face_fraction < 0.15


def test_a_large_jpeg_with_a_large_face_is_decoded_once_at_a_reduced_size(
    analyzer: FaceAnalyzer, encode: Encode, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ingest.sanitize as pipeline

    photo = astronaut().resize((3000, 3000), Image.Resampling.LANCZOS)
    decodes: list[float] = []
    real_decode = pipeline.decode_image

    def counting_decode(*args: object, **kwargs: object) -> object:
        decoded = real_decode(*args, **kwargs)  # type: ignore[arg-type]
        decodes.append(decoded.scale)
        return decoded

    monkeypatch.setattr(pipeline, "decode_image", counting_decode)
    result = _accepted(sanitize(encode(photo), SanitizeLimits(min_sharpness=0.0), analyzer))
    assert decodes == [0.5], "3000 px: 1/2 gives the 900 px detection needs, 1/4 would not"
    assert (result.source_width, result.source_height) == (3000, 3000)
    assert result.face_box.side > 450, "in full-size coordinates"


def test_the_perceptual_hash_ignores_format_size_and_metadata(
    run_sanitize: Run, portrait: Image.Image, encode: Encode
) -> None:
    first = _accepted(run_sanitize(encode(portrait, exif=fake_exif())))
    second = _accepted(run_sanitize(encode(portrait.resize((700, 700)), "WEBP", quality=70)))
    mirrored = _accepted(run_sanitize(encode(portrait.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "PNG")))
    assert first.perceptual_hash.distance(second.perceptual_hash.value) <= 4
    assert first.perceptual_hash.distance(mirrored.perceptual_hash.value) <= 4
    assert "perceptual_hash" not in repr(first)
