"""Fuzzing: valid photos of every accepted format, mutated the ways broken or hostile files are.

Each mutated file must get a verdict (``sanitize`` never raises: in the service a raise would be a 5xx),
with a known reason code, in under 2 seconds of CPU time (CPU time, not wall time, so a busy test machine
cannot fail it; a decoder or detector looping on crafted input would), and the very same verdict when it
is decoded as the service decodes it, in the decoding sandbox's workers (`ingest.sandbox`). Bounded: a
fixed number of examples of small photos, about 15-60 seconds in all (each is sanitized twice).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ingest.verdicts import Accepted, ReasonCode, Rejected, SanitizeResult
from likeness_dev.samples import astronaut, fake_exif

Run = Callable[[bytes], SanitizeResult]
MAX_CPU_SECONDS = 2.0


def _valid(image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    astronaut().resize((384, 384)).save(buffer, format=image_format, **options)
    return buffer.getvalue()


SEEDS = {
    "jpeg": _valid("JPEG", quality=85, exif=fake_exif()),
    "progressive jpeg": _valid("JPEG", quality=80, progressive=True),
    "png": _valid("PNG", compress_level=1),
    "webp": _valid("WEBP", quality=80),
    "heic": _valid("HEIF", quality=60),
}


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed photo with 1-6 mutations: flipped, overwritten, inserted, deleted or repeated bytes, a
    header field set to an extreme, or the end cut off."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        kind = draw(
            st.sampled_from(["flip", "overwrite", "insert", "delete", "repeat", "extreme", "truncate"])
        )
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            patch = draw(st.binary(min_size=1, max_size=16))
            data[position : position + len(patch)] = patch
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 256))]
        elif kind == "repeat":
            length = draw(st.integers(1, 4096))
            data[position:position] = data[position : position + length] * draw(st.integers(1, 4))
        elif kind == "extreme":
            # Where the headers keep sizes and lengths: early bytes, set to 0 or to all ones.
            position = draw(st.integers(0, min(len(data), 64)))
            data[position : position + 2] = draw(st.sampled_from([b"\x00\x00", b"\xff\xff", b"\x7f\xff"]))
        else:
            del data[draw(st.integers(0, len(data))) :]
    return bytes(data)


def test_the_seeds_are_accepted(run_sanitize: Run, run_sanitize_sandboxed: Run) -> None:
    """The fuzzing starts from photos ingest accepts, so mutations reach deep into the pipeline."""
    for name, data in SEEDS.items():
        assert isinstance(run_sanitize(data), Accepted), name
        assert isinstance(run_sanitize_sandboxed(data), Accepted), name


def _verdict(result: SanitizeResult) -> tuple[object, ...]:
    """What a person and the store would see: the codes and scores, or the stored crop itself."""
    if isinstance(result, Rejected):
        return ("rejected", result.codes, result.scores)
    return ("accepted", result.png, result.scores, result.perceptual_hash)


@pytest.mark.slow
@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=mutated())
def test_mutated_photos_always_get_a_verdict_quickly(
    run_sanitize: Run, run_sanitize_sandboxed: Run, data: bytes
) -> None:
    started = time.process_time()
    result = run_sanitize(data)
    cpu_seconds = time.process_time() - started
    assert isinstance(result, Accepted | Rejected)
    if isinstance(result, Rejected):
        assert result.reasons
        assert all(isinstance(code, ReasonCode) for code in result.codes)
    else:
        assert Image.open(io.BytesIO(result.png)).size == (512, 512)
    assert cpu_seconds < MAX_CPU_SECONDS, f"{cpu_seconds:.2f} s of CPU for one upload"
    assert _verdict(run_sanitize_sandboxed(data)) == _verdict(result), "the sandbox decodes it the same"
