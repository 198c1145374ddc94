"""Face templates: ingest's per-photo layouts and the set the trainer seals beside a model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from likeness_ml.face_templates import (
    EMBEDDING_SIZE,
    MAX_TEMPLATES,
    embeddings_from_json,
    pack_template_set,
    parse_photo_templates,
    read_photo_template,
    unpack_template_set,
)


def test_a_template_set_round_trips_exactly() -> None:
    embeddings = np.random.default_rng(1).normal(size=(5, EMBEDDING_SIZE)).astype(np.float32)
    blob = pack_template_set(embeddings)
    assert blob[:4] == b"LKFS"
    assert np.array_equal(unpack_template_set(blob), embeddings)
    assert unpack_template_set(pack_template_set(embeddings[:0])).shape == (0, EMBEDDING_SIZE)


def test_anything_else_is_refused() -> None:
    blob = pack_template_set(np.ones((2, EMBEDDING_SIZE), dtype=np.float32))
    for bad in (b"", blob[:-1], blob + b"\0", b"LKFT" + blob[4:], blob[:4] + b"\x02" + blob[5:]):
        with pytest.raises(ValueError, match="template set"):
            unpack_template_set(bad)
    forged_count = blob[:8] + (MAX_TEMPLATES + 1).to_bytes(4, "little")
    with pytest.raises(ValueError, match="known version"):
        unpack_template_set(forged_count)
    nan = pack_template_set(np.full((1, EMBEDDING_SIZE), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        unpack_template_set(nan)
    with pytest.raises(ValueError, match="embeddings are"):
        pack_template_set(np.ones((2, 127), dtype=np.float32))


def test_ingests_layouts_are_read_and_others_skipped() -> None:
    embedding = np.arange(EMBEDDING_SIZE, dtype="<f4")
    version_0 = embedding.tobytes()
    version_1 = b"LKFT" + bytes([1, 0, 0, 0]) + (9).to_bytes(8, "little") + embedding.tobytes()
    assert np.array_equal(read_photo_template(version_0), embedding)  # type: ignore[arg-type]
    assert np.array_equal(read_photo_template(version_1), embedding)  # type: ignore[arg-type]
    assert read_photo_template(b"LKFT" + bytes([2]) + version_1[5:]) is None
    assert parse_photo_templates([version_0, b"junk", version_1]).shape == (2, EMBEDDING_SIZE)


def test_an_export_s_json_embeddings_read_back_exactly() -> None:
    """The export writes each float32 as a JSON number (through a double): read back, it is the same."""
    embeddings = np.random.default_rng(2).normal(size=(3, EMBEDDING_SIZE)).astype(np.float32)
    written = json.loads(json.dumps([[float(v) for v in row] for row in embeddings]))
    assert np.array_equal(embeddings_from_json(written), embeddings)
    assert embeddings_from_json([]).shape == (0, EMBEDDING_SIZE)


@pytest.mark.parametrize(
    "rows",
    [[[0.0] * (EMBEDDING_SIZE - 1)], [[0.0] * EMBEDDING_SIZE, [0.0]], [[float("nan")] * EMBEDDING_SIZE]],
)
def test_json_embeddings_of_the_wrong_shape_or_not_finite_are_refused(rows: list[list[float]]) -> None:
    with pytest.raises(ValueError, match="embedding"):
        embeddings_from_json(rows)
